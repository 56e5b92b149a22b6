using Akka.Actor;
using MetaMae.Actors.Runs;
using MetaMae.Data;
using MetaMae.Data.Pipeline;
using MetaMae.Data.Readers;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;

public sealed class LearnerActorSpecs : MetaMaeTestKit
{
    private static readonly IDataset Data = DatasetCatalog.Open("fashion-mnist", new ReaderOptions(EmbeddedData.Resolve("embedded"), Split.Pretrain));

    private static Batch MakeBatch(long sequence, int size = 16)
    {
        var decoded = Enumerable.Range(0, size).Select(i =>
        {
            int index = (int)(sequence * size + i);
            return new Decoded(new OrderedRecord(new StreamPosition(0, index), index), Data.Read(index, new DecodeContext(0, 0, index, true)), null);
        }).ToList();
        return DataFlows.CollateGroup(Data.Spec, decoded, new StreamPosition(0, (sequence + 1) * size), sequence);
    }

    private (Akka.TestKit.TestProbe Parent, IActorRef Learner) Start(RunSpec config)
    {
        var parent = CreateTestProbe();
        var learner = parent.ChildActorOf(LearnerActor.Props(config, "run-1", Path.Combine(Root, "run-1"), parent.Ref));
        return (parent, learner);
    }

    /// <summary>A learner past its start-up (step-0 checkpoint, ready) with stream <paramref name="generation"/> opened by the test actor.</summary>
    private async Task<(Akka.TestKit.TestProbe Parent, IActorRef Learner)> Streaming(RunSpec config, int generation = 1)
    {
        var (parent, learner) = Start(config);
        await parent.ExpectMsgAsync<CheckpointSaved>(TimeSpan.FromSeconds(30));
        await parent.ExpectMsgAsync<LearnerReady>();
        learner.Tell(new FeedInit(generation), TestActor);
        await ExpectMsgAsync<FeedAck>();
        return (parent, learner);
    }

    [Fact]
    public async Task Learner_saves_the_random_init_checkpoint_and_reports_ready_at_the_start()
    {
        var (parent, _) = Start(TestRuns.Tiny(Root));
        var saved = await parent.ExpectMsgAsync<CheckpointSaved>(TimeSpan.FromSeconds(30));
        Assert.Equal(0, saved.Step);
        Assert.True(Directory.Exists(saved.Path));
        var ready = await parent.ExpectMsgAsync<LearnerReady>();
        Assert.Equal(0, ready.Step);
        Assert.Equal(StreamPosition.Start, ready.Position);
    }

    [Fact]
    public async Task Learner_acks_each_batch_reports_steps_and_checkpoints_every_K()
    {
        var (parent, learner) = await Streaming(TestRuns.Tiny(Root, steps: 10, every: 3));
        for (long s = 1; s <= 3; s++)
        {
            learner.Tell(new FeedBatch(1, MakeBatch(s - 1)), TestActor);
            var report = await parent.ExpectMsgAsync<StepReport>(TimeSpan.FromSeconds(30));
            Assert.Equal(s, report.Step);
            Assert.True(double.IsFinite(report.Total) && report.Contrastive is not null);
            Assert.Equal(new StreamPosition(0, s * 16), report.DataPosition);
            if (s == 3) Assert.Equal(3, (await parent.ExpectMsgAsync<CheckpointSaved>()).Step);
            await ExpectMsgAsync<FeedAck>(); // the next batch is asked for only after the step (and its checkpoint)
        }
        await parent.ExpectNoMsgAsync(TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public async Task Learner_ignores_batches_of_a_replaced_stream()
    {
        var (parent, learner) = await Streaming(TestRuns.Tiny(Root), generation: 2);
        learner.Tell(new FeedBatch(1, MakeBatch(0)), TestActor); // generation 1 is stale
        await ExpectNoMsgAsync(TimeSpan.FromMilliseconds(500));
        await parent.ExpectNoMsgAsync(TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public async Task Learner_finishes_at_the_last_step_with_a_final_checkpoint_and_asks_for_no_more()
    {
        var (parent, learner) = await Streaming(TestRuns.Tiny(Root, steps: 2, every: 100));
        learner.Tell(new FeedBatch(1, MakeBatch(0)), TestActor);
        await parent.ExpectMsgAsync<StepReport>(TimeSpan.FromSeconds(30));
        await ExpectMsgAsync<FeedAck>();
        learner.Tell(new FeedBatch(1, MakeBatch(1)), TestActor);
        await parent.ExpectMsgAsync<StepReport>(TimeSpan.FromSeconds(30));
        var final = await parent.ExpectMsgAsync<CheckpointSaved>();
        Assert.True(final.Final);
        Assert.Equal(2, (await parent.ExpectMsgAsync<LearnerFinished>()).Step);
        await ExpectNoMsgAsync(TimeSpan.FromMilliseconds(300)); // no Ack: the stream is not asked for more
    }

    [Fact]
    public async Task Learner_reports_how_long_it_waited_for_data()
    {
        var (parent, learner) = await Streaming(TestRuns.Tiny(Root));
        await parent.ExpectNoMsgAsync(TimeSpan.FromMilliseconds(400)); // data slower than the learner: it waits, it does not fail
        learner.Tell(new FeedBatch(1, MakeBatch(0)), TestActor);
        var report = await parent.ExpectMsgAsync<StepReport>(TimeSpan.FromSeconds(30));
        Assert.InRange(report.WaitSeconds, 0.35, 30);
    }

    [Fact]
    public async Task Save_and_stop_writes_a_checkpoint_and_replies_with_it()
    {
        var (parent, learner) = Start(TestRuns.Tiny(Root));
        await parent.ExpectMsgAsync<CheckpointSaved>(TimeSpan.FromSeconds(30));
        await parent.ExpectMsgAsync<LearnerReady>();
        learner.Tell(StopLearner.Instance, TestActor);
        var stopped = await ExpectMsgAsync<LearnerStopped>(TimeSpan.FromSeconds(30));
        Assert.True(File.Exists(Path.Combine(stopped.Checkpoint, "manifest.json")));
    }
}

/// <summary>Issue 19, fault 3: a learner whose coordinator is gone stops at once instead of training on unseen.</summary>
public sealed class OrphanedLearnerSpecs : MetaMaeTestKit
{
    [Fact]
    public async Task A_learner_stops_when_its_coordinator_terminates_and_reports_nothing_more()
    {
        var coordinator = CreateTestProbe();
        var supervisor = Sys.ActorOf(LearnerSupervisorActor.Props(TestRuns.Tiny(Root), "run-1", Path.Combine(Root, "run-1"), coordinator.Ref));
        Watch(supervisor);
        await coordinator.ExpectMsgAsync<CheckpointSaved>(TimeSpan.FromSeconds(30));
        await coordinator.ExpectMsgAsync<LearnerReady>();

        Sys.Stop(coordinator.Ref); // the coordinator's node died or the singleton moved
        await ExpectTerminatedAsync(supervisor, TimeSpan.FromSeconds(30));
    }
}
