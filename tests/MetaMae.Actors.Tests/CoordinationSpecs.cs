using Akka.Actor;
using Akka.TestKit;
using MetaMae.Actors.Reporting;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;

/// <summary>
/// The coordinator's children alone, with TestKit probes as their parent and peers: the learner group's rendezvous
/// (like TorchElastic's), the probe coordinator's hand-out and retries; and the coordinator's end (heard once,
/// report bounded).
/// </summary>
public sealed class CoordinationSpecs : MetaMaeTestKit
{
    private static readonly CoordinatorSettings Quick = new()
    {
        Placement = TimeSpan.FromSeconds(30), ProbeTimeout = TimeSpan.FromSeconds(30), AwaitLearners = TimeSpan.FromSeconds(1),
        Leaving = TimeSpan.FromSeconds(10), ProbeRetry = TimeSpan.FromMilliseconds(300), LearnerLost = TimeSpan.FromMilliseconds(200),
    };

    private RunSpec Pair => TestRuns.Tiny(Root, steps: 40, every: 10) with { Replicas = 2 };

    [Fact]
    public async Task The_learner_group_forms_when_every_replica_is_ready_at_one_step_and_re_forms_without_the_one_that_left()
    {
        var parent = CreateTestProbe();
        TestProbe[] learnerHosts = [CreateTestProbe(), CreateTestProbe()];
        var dataHost = CreateTestProbe();
        var hosts = new RunHosts(learnerHosts.Select(h => h.Ref).ToList(), [dataHost.Ref], []);
        var group = parent.ChildActorOf(LearnerGroupActor.Props(Pair, "g", Path.Combine(Root, "g"), hosts, Quick));
        group.Tell(new StartTraining());

        // One replica per learner node, ranks 0 and 1 of group 1.
        var starts = learnerHosts.Select(h => h.ExpectMsg<StartLearner>()).ToList();
        Assert.Equal(new[] { (0, 2, 1), (1, 2, 1) }, starts.Select(s => (s.Rank, s.Replicas, s.Group)).Order());
        TestProbe[] learners = [CreateTestProbe(), CreateTestProbe()];
        TestProbe[] endpoints = [CreateTestProbe(), CreateTestProbe()];

        // Rank 0 alone is not a group: no feed, no formation.
        group.Tell(new LearnerReady("g", 0, new StreamPosition(0, 0), Rank: 0, Group: 1, Endpoint: endpoints[0].Ref), learners[0].Ref);
        await dataHost.ExpectNoMsgAsync(TimeSpan.FromMilliseconds(300));
        group.Tell(new LearnerReady("g", 0, new StreamPosition(0, 0), Rank: 1, Group: 1, Endpoint: endpoints[1].Ref), learners[1].Ref);
        foreach (var l in learners)
        {
            var form = l.ExpectMsg<FormGroup>();
            Assert.Equal(endpoints.Select(e => e.Ref), form.Endpoints);
        }
        var feeds = new[] { dataHost.ExpectMsg<OpenFeed>(), dataHost.ExpectMsg<OpenFeed>() };
        Assert.Equal(new[] { 0, 1 }, feeds.Select(f => f.Slice).Order());
        Assert.All(feeds, f => Assert.Equal(2, f.SliceCount));
        var formed = parent.ExpectMsg<GroupFormedAt>();
        Assert.Equal((1, 2), (formed.Group, formed.Replicas));

        // Replica 1 leaves: the group is dissolved (each endpoint told), the user warned with the cause, and, once the
        // leaving learners have stopped, group 2 is placed.
        group.Tell(new ReplicaLeft("g", 1, 1, "its collective timed out"));
        var warning = parent.ExpectMsg<PartWarning>();
        Assert.Contains("replica 1 left group 1: its collective timed out", warning.Message);
        foreach (var e in endpoints) Assert.Equal(1, e.ExpectMsg<DissolveGroup>().Group);
        foreach (var h in learnerHosts) h.ExpectMsg<RunEnded>();
        await learnerHosts[0].ExpectNoMsgAsync(TimeSpan.FromMilliseconds(300)); // not beside learners still running
        foreach (var l in learners) Sys.Stop(l.Ref);
        var again = learnerHosts.Select(h => h.ExpectMsg<StartLearner>()).ToList();
        Assert.All(again, s => Assert.Equal(2, s.Group));

        // A digest of the old group no longer counts; two differing digests of the new one fail the run.
        group.Tell(new ReplicaDigest("g", 1, 0, 10, new string('a', 64)));
        group.Tell(new ReplicaDigest("g", 2, 0, 10, new string('a', 64)));
        group.Tell(new ReplicaDigest("g", 2, 1, 10, new string('b', 64)));
        var failed = parent.ExpectMsg<RunPartFailed>();
        Assert.Contains("the 2 replicas of learner group 2 diverged at step 10", failed.Reason);
    }

    [Fact]
    public async Task The_probe_coordinator_asks_the_next_evaluator_host_when_one_does_not_take_a_probe_or_dies_with_it()
    {
        var config = TestRuns.Tiny(Root, steps: 8, every: 4, evaluate: true);
        var parent = CreateTestProbe();
        var recorder = CreateTestProbe();
        TestProbe[] evaluators = [CreateTestProbe(), CreateTestProbe()];
        var probes = parent.ChildActorOf(ProbeCoordinatorActor.Props(config, "p", recorder.Ref, evaluators.Select(e => e.Ref).ToList(), [], Quick));

        var checkpoint = new CheckpointSaved("p", 4, Path.Combine(Root, "step-4"), false);
        probes.Tell(new CheckpointTaken(checkpoint, Probe: true));
        Assert.Equal(new[] { 4L }, recorder.ExpectMsg<PruneCheckpoints>().Owed); // step 4 is owed: never pruned
        var first = evaluators[0].ExpectMsg<ProbeRequest>();
        Assert.Equal((4L, "fashion-mnist"), (first.Checkpoint.Step, first.Dataset));

        // The first host never takes it: after ProbeRetry the second is asked.
        var second = evaluators[1].ExpectMsg<ProbeRequest>(TimeSpan.FromSeconds(5));
        probes.Tell(new ProbeAccepted("p", 4, "fashion-mnist", evaluators[1].Ref));
        // The host that took it dies: it is asked again elsewhere.
        Sys.Stop(evaluators[1].Ref);
        Assert.Equal(4, evaluators[0].FishForMessage<ProbeRequest>(_ => true, TimeSpan.FromSeconds(5)).Checkpoint.Step);

        // Training ends with the probe owed; its result settles the probes, once.
        probes.Tell(new TrainingEnded());
        await parent.ExpectNoMsgAsync(TimeSpan.FromMilliseconds(300));
        var result = new EvaluationResult("p", 4, "fashion-mnist", "accuracy", 0.5, 1, 300, 200, checkpoint.Path);
        probes.Tell(result);
        Assert.Equal(result, parent.ExpectMsg<EvaluationResult>());
        parent.ExpectMsg<ProbesSettled>();
        probes.Tell(result); // answered twice: ignored
        await parent.ExpectNoMsgAsync(TimeSpan.FromMilliseconds(300));
        Assert.Empty(recorder.FishForMessage<PruneCheckpoints>(p => p.Owed.Count == 0).Owed);
    }

    [Fact]
    public async Task With_backlog_latest_a_probe_no_host_took_is_skipped_for_a_newer_one_and_said_once_then_counted()
    {
        Assert.Equal(ProbeBacklog.Latest, new EvaluationConfig().Backlog); // the default
        var config = TestRuns.Tiny(Root, steps: 16, every: 4, evaluate: true);
        config = config with { Evaluation = config.Evaluation with { Backlog = ProbeBacklog.Latest } };
        var parent = CreateTestProbe();
        var recorder = CreateTestProbe();
        var probes = parent.ChildActorOf(ProbeCoordinatorActor.Props(config, "p", recorder.Ref, [], [], Quick));
        CheckpointSaved At(long step) => new("p", step, Path.Combine(Root, $"step-{step}"), step == 16);

        // No evaluator host yet: 4 waits; 8 replaces it, 12 replaces 8.
        foreach (var step in new long[] { 4, 8, 12 }) probes.Tell(new CheckpointTaken(At(step), Probe: true));
        var warning = parent.ExpectMsg<PartWarning>();
        Assert.Contains("the probe of step 4 on fashion-mnist was skipped for step 8's", warning.Message);
        await parent.ExpectNoMsgAsync(TimeSpan.FromMilliseconds(300)); // the second skip is counted, not said again
        Assert.Equal(new[] { 12L }, recorder.FishForMessage<PruneCheckpoints>(p => p.Owed.Count == 1 && p.Owed.Contains(12)).Owed);

        // A host joins: it is asked for the newest only. The final checkpoint is never skipped, even for nothing newer.
        var evaluator = CreateTestProbe();
        probes.Tell(new HostsChanged(new RunHosts([], [], [evaluator.Ref])));
        Assert.Equal(12, evaluator.ExpectMsg<ProbeRequest>().Checkpoint.Step);
        probes.Tell(new ProbeAccepted("p", 12, "fashion-mnist", evaluator.Ref));
        probes.Tell(new CheckpointTaken(At(16), Probe: true));
        Assert.Equal(16, evaluator.ExpectMsg<ProbeRequest>().Checkpoint.Step);
        // The host's queue skips 12 (it was waiting behind nothing newer than 16); 16 reports.
        probes.Tell(new EvaluationSkipped("p", 12, "fashion-mnist", 16));
        probes.Tell(new TrainingEnded());
        probes.Tell(new EvaluationResult("p", 16, "fashion-mnist", "accuracy", 0.5, 1, 300, 200, At(16).Path));
        parent.ExpectMsg<EvaluationResult>();
        var summary = parent.ExpectMsg<PartWarning>();
        Assert.Contains("3 probe(s) of stale checkpoints were skipped", summary.Message);
        Assert.Contains("fashion-mnist at steps 4, 8, 12", summary.Message);
        parent.ExpectMsg<ProbesSettled>();
    }

    [Fact]
    public async Task A_stop_leaves_the_owed_probes_to_resume_names_them_and_their_checkpoints_are_never_pruned()
    {
        var config = TestRuns.Tiny(Root, steps: 16, every: 4, evaluate: true);
        config = config with { Evaluation = config.Evaluation with { Backlog = ProbeBacklog.All } };
        var parent = CreateTestProbe();
        var recorder = CreateTestProbe();
        var evaluator = CreateTestProbe();
        var probes = parent.ChildActorOf(ProbeCoordinatorActor.Props(config, "p", recorder.Ref, [evaluator.Ref], [], Quick));
        foreach (var step in new long[] { 4, 8, 12 })
            probes.Tell(new CheckpointTaken(new CheckpointSaved("p", step, Path.Combine(Root, $"step-{step}"), false), Probe: true));
        Assert.Equal(3, evaluator.ReceiveN(3).Count); // backlog all: nothing skipped
        recorder.ReceiveN(3); // a prune after each
        probes.Tell(new AbandonProbes());
        var warning = parent.ExpectMsg<PartWarning>();
        Assert.Contains("3 probe(s) were not run before the run ended; `metamae resume` runs them", warning.Message);
        Assert.Contains("fashion-mnist at steps 4, 8, 12", warning.Message);
        // The stop's own checkpoint comes after: the prune it triggers still keeps 4, 8 and 12.
        probes.Tell(new CheckpointTaken(new CheckpointSaved("p", 14, Path.Combine(Root, "step-14"), false), Probe: false));
        var prune = recorder.ExpectMsg<PruneCheckpoints>();
        Assert.Equal(new long[] { 4, 8, 12 }, prune.Owed.Order().ToArray());
        await parent.ExpectNoMsgAsync(TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public async Task A_run_s_end_is_heard_once_by_a_waiter_that_also_listens_to_its_progress()
    {
        var config = TestRuns.Tiny(Root, steps: 4, every: 4);
        var coordinator = Coordinator(config, "once", progress: TestActor);
        coordinator.Tell(StartRun.Instance, TestActor);
        var end = await FishForMessageAsync<RunFinished>(_ => true, TimeSpan.FromMinutes(2));
        Assert.Equal(RunStatus.Completed, end.Status);
        await ExpectNoMsgAsync(TimeSpan.FromSeconds(1)); // RunFinished is the last word; a second one would arrive here
    }

    [Fact]
    public async Task The_final_report_is_bounded_by_a_timer_of_its_own()
    {
        // The reporter hangs on the final report. The bound was a receive timeout that any message reset (data hosts
        // report every 2 s); now it is a timer of its own: the run ends within it, saying so.
        var config = TestRuns.Tiny(Root, steps: 4, every: 4);
        FailPoints.Set("artifacts.report", FailAction.Sleep, millis: 20_000, times: 1);
        var coordinator = Coordinator(config, "late", options: new RunStartOptions { Settings = CoordinatorSettings.For(config) with { FinalReport = TimeSpan.FromSeconds(3) } });
        coordinator.Tell(StartRun.Instance, TestActor);
        var end = await ExpectMsgAsync<RunFinished>(TimeSpan.FromSeconds(60));
        Assert.Contains("could not write the plots and report.md within 3 s", end.Error);
    }
}
