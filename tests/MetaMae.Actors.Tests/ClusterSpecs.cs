using Akka.Actor;
using Akka.Hosting;
using MetaMae.Actors.Cluster;
using MetaMae.Actors.Reporting;
using MetaMae.Protocol;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace MetaMae.Actors.Tests;

/// <summary>The same actors across cluster nodes: the run a cluster trains equals the one a single node trains, bit for bit.</summary>
public sealed class ClusterSpecs : TempDirTest
{
    [Fact]
    public async Task A_run_across_coordinator_learner_two_data_and_an_evaluator_node_equals_a_one_node_run()
    {
        var config = TestRuns.Tiny(Path.Combine(Root, "cluster"), steps: 24, every: 8, evaluate: true);
        config = config with { Evaluation = config.Evaluation with { Epochs = 2 } };

        await using (var cluster = new InProcessCluster())
        {
            await cluster.Add(Roles.Coordinator);
            await cluster.Add(Roles.Learner);
            await cluster.Add(Roles.Data);
            await cluster.Add(Roles.Data);
            await cluster.Add(Roles.Evaluator);
            var result = await cluster.Run(0, config, "spread", TimeSpan.FromMinutes(3));
            Assert.True(result.Status == RunStatus.Completed, result.Error);
            Assert.Equal(24, result.Step);
            Assert.Equal(new long[] { 0, 8, 16, 24 }, result.Results.Select(r => r.Step).Order().ToArray());

            // Every batch once, in order: the data position after step k is k batches into the order.
            var steps = RunArtifacts.ReadSteps(Path.Combine(result.RunDirectory, "metrics.jsonl"));
            Assert.Equal(Enumerable.Range(1, 24).Select(i => (long)i), steps.Keys);
            var count = Data.DatasetCatalog.Open("fashion-mnist", new Data.Readers.ReaderOptions(Data.EmbeddedData.Resolve("embedded"), Data.Split.Pretrain)).Count;
            foreach (var (k, e) in steps)
                Assert.Equal(k * 16 % (count / 16 * 16), e.GetProperty("offset").GetInt64());
        }

        // The same run on one node (the coordinator's own hosts): identical weights.
        var single = TestRuns.Tiny(Path.Combine(Root, "single"), steps: 24, every: 8);
        await using (var one = new InProcessCluster())
        {
            await one.Add(Roles.All);
            var alone = await one.Run(0, single, "alone", TimeSpan.FromMinutes(3));
            Assert.True(alone.Status == RunStatus.Completed, alone.Error);
            Assert.Equal(TestRuns.FinalWeights(alone.RunDirectory, 24), TestRuns.FinalWeights(Path.Combine(config.Out, "spread"), 24));
        }
    }

    [Fact]
    public async Task A_partitioned_minority_downs_itself_while_the_majority_finishes_the_run()
    {
        var config = TestRuns.Tiny(Path.Combine(Root, "split"), steps: 120, every: 20);
        FailPoints.Set("learner.step", FailAction.Sleep, millis: 100); // a run long enough to outlast the partition
        try
        {
            await using var cluster = new InProcessCluster { ExtraHocon = "akka.remote.dot-netty.tcp.applied-adapters = [trttl]" };
            await cluster.Add(Roles.Coordinator, Roles.Data);
            await cluster.Add(Roles.Learner, Roles.Data);
            int minority = await cluster.Add(Roles.Data);
            var finished = new TaskCompletionSource<RunFinished>(TaskCreationOptions.RunContinuationsAsynchronously);
            var progress = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var watcher = cluster.Seed.ActorOf(Props.Create(() => new StepWatcher(5, progress)));
            cluster.Seed.ActorOf(RunClientActor.Props(cluster.Manager(0), new SubmitRun("split", Path.Combine(config.Out, "split"), config), watcher, finished));
            await progress.Task.WaitAsync(TimeSpan.FromMinutes(2));

            // The third data node loses both others: two against one.
            Assert.True(await cluster.Partition(minority, 0));
            Assert.True(await cluster.Partition(minority, 1));
            await cluster.System(minority).WhenTerminated.WaitAsync(TimeSpan.FromSeconds(60)); // the minority downed itself
            var members = Akka.Cluster.Cluster.Get(cluster.Seed);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (members.State.Members.Count(m => m.Status == Akka.Cluster.MemberStatus.Up) > 2 && clock.Elapsed < TimeSpan.FromSeconds(60))
                await Task.Delay(100);
            Assert.Equal(2, members.State.Members.Count(m => m.Status == Akka.Cluster.MemberStatus.Up)); // and the majority removed it
            Assert.False(finished.Task.IsCompleted, "the run ended before the partition was resolved: nothing was shown");
            var result = await finished.Task.WaitAsync(TimeSpan.FromMinutes(2));
            Assert.True(result.Status == RunStatus.Completed, result.Error);
            Assert.Equal(120, result.Step);
            FailPoints.Clear();

            var alone = TestRuns.Tiny(Path.Combine(Root, "alone"), steps: 120, every: 20);
            await using var one = new InProcessCluster();
            await one.Add(Roles.All);
            var straight = await one.Run(0, alone, "alone", TimeSpan.FromMinutes(2));
            Assert.Equal(TestRuns.FinalWeights(straight.RunDirectory, 120), TestRuns.FinalWeights(result.RunDirectory, 120));
        }
        finally
        {
            FailPoints.Clear();
        }
    }

    [Fact]
    public async Task An_evaluator_node_joining_late_picks_up_the_checkpoints_that_still_lack_a_result()
    {
        var config = TestRuns.Tiny(Path.Combine(Root, "late"), steps: 16, every: 8, evaluate: true);
        config = config with { Evaluation = config.Evaluation with { Epochs = 2 } };
        await using var cluster = new InProcessCluster();
        await cluster.Add(Roles.Coordinator, Roles.Learner, Roles.Data);
        var finished = new TaskCompletionSource<RunFinished>(TaskCreationOptions.RunContinuationsAsynchronously);
        cluster.Seed.ActorOf(RunClientActor.Props(cluster.Manager(0), new SubmitRun("late", Path.Combine(config.Out, "late"), config), null, finished));
        // Training ends with no evaluator in the cluster: the run waits for its probes.
        var final = Path.Combine(config.Out, "late", "checkpoints", "step-00000016", "manifest.json");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!File.Exists(final) && clock.Elapsed < TimeSpan.FromMinutes(2)) await Task.Delay(100);
        Assert.True(File.Exists(final), "training did not finish");
        await Task.Delay(500);
        Assert.False(finished.Task.IsCompleted, "the run ended without its probes");
        await cluster.Add(Roles.Evaluator);
        var result = await finished.Task.WaitAsync(TimeSpan.FromMinutes(2));
        Assert.True(result.Status == RunStatus.Completed, result.Error);
        Assert.Equal(new long[] { 0, 8, 16 }, result.Results.Select(r => r.Step).Order().ToArray());
    }

    /// <summary>Completes <paramref name="reached"/> when a step report at or past <paramref name="step"/> arrives.</summary>
    private sealed class StepWatcher : ReceiveActor
    {
        public StepWatcher(long step, TaskCompletionSource reached)
        {
            Receive<StepReport>(r => { if (r.Step >= step) reached.TrySetResult(); });
            ReceiveAny(_ => { });
        }
    }
}
