using Akka.Actor;
using Akka.Streams;
using Akka.Streams.Dsl;
using MetaMae.Actors.Runs;
using MetaMae.Data;
using MetaMae.Data.Pipeline;
using MetaMae.Data.Readers;
using MetaMae.Model;
using MetaMae.Model.Checkpoints;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;

public sealed class EvaluatorAndBackPressureSpecs : MetaMaeTestKit
{
    private static readonly DatasetRef Fashion = new() { Name = "fashion-mnist", Root = "embedded", MaxTrain = 300, MaxTest = 200 };

    private string SaveCheckpoint(ModelConfig config, long step)
    {
        using var model = MaskedAutoencoder.Create(config, 1);
        return Checkpoint.Save(Path.Combine(Root, $"step-{step}"), model, null,
            new CheckpointMeta { Step = step, Seed = 1, Config = ModelConfigRecord.From(config) });
    }

    [Fact]
    public async Task Evaluator_probes_a_checkpoint_and_replies_with_the_data_sets_metric()
    {
        var config = TestRuns.Tiny(Root).ToModelConfig();
        var path = SaveCheckpoint(config, 3);
        var evaluator = Sys.ActorOf(EvaluatorActor.Props("r", Fashion, new EvaluationConfig { Epochs = 100, Lr = 1e-2 }, config));
        evaluator.Tell(new CheckpointSaved("r", 3, path, false));
        var result = await ExpectMsgAsync<EvaluationResult>(TimeSpan.FromSeconds(60));
        Assert.Equal(("fashion-mnist", "accuracy", 3L), (result.Dataset, result.Metric, result.Step));
        Assert.Equal((300, 200), (result.TrainSamples, result.TestSamples));
        // Ten classes, chance 0.1: a linear probe on this random encoder's features of 300 images scores 0.325 here, so the
        // bound fails a probe that does not learn (a broken feature path or labels scores about 0.1).
        Assert.InRange(result.Value, 0.25, 1.0);
        // Another run's checkpoint is not this evaluator's business.
        evaluator.Tell(new CheckpointSaved("other-run", 4, path, false));
        await ExpectNoMsgAsync(TimeSpan.FromMilliseconds(300));
    }

    [Fact]
    public async Task Evaluator_reports_a_corrupt_checkpoint_as_a_failure_and_keeps_working()
    {
        var config = TestRuns.Tiny(Root).ToModelConfig();
        var good = SaveCheckpoint(config, 1);
        var bad = SaveCheckpoint(config, 2);
        File.WriteAllText(Path.Combine(bad, Checkpoint.WeightsFile), "truncated");
        var evaluator = Sys.ActorOf(EvaluatorActor.Props("r", Fashion, new EvaluationConfig { Epochs = 2 }, config));
        evaluator.Tell(new CheckpointSaved("r", 2, bad, false));
        var failed = await ExpectMsgAsync<EvaluationFailed>(TimeSpan.FromSeconds(60));
        Assert.Contains("model.safetensors", failed.Reason);
        evaluator.Tell(new CheckpointSaved("r", 1, good, false));
        await ExpectMsgAsync<EvaluationResult>(TimeSpan.FromSeconds(60));
    }

    [Fact]
    public async Task A_probe_asked_again_by_a_coordinator_that_moved_answers_the_new_one_not_the_dead_one()
    {
        var spec = TestRuns.Tiny(Root, evaluate: true) with { Evaluation = new EvaluationConfig { Datasets = [Fashion], Epochs = 2 } };
        var config = spec.ToModelConfig();
        var path = SaveCheckpoint(config, 4);
        FailPoints.Set("evaluator.probe", FailAction.Sleep, millis: 1500); // the probe is still running when the move happens
        var scheduler = Sys.ActorOf(ProbeSchedulerActor.Props("r", spec.Evaluation, config, spec.MaxAbsValue));
        var first = CreateTestProbe();
        var second = CreateTestProbe();
        var saved = new CheckpointSaved("r", 4, path, true);
        scheduler.Tell(new ProbeRequest(spec, saved, Fashion.Name, first.Ref));
        await Task.Delay(200);
        // The coordinator moved: the new one asks for the same probe while the first is running. It must get the answer
        // (the old one died with its node), and the probe is not run twice.
        scheduler.Tell(new ProbeRequest(spec, saved, Fashion.Name, second.Ref));
        var result = await second.ExpectMsgAsync<EvaluationResult>(TimeSpan.FromSeconds(60));
        Assert.Equal((4L, Fashion.Name), (result.Step, result.Dataset));
        await first.ExpectNoMsgAsync(TimeSpan.FromMilliseconds(300));
        await second.ExpectNoMsgAsync(TimeSpan.FromSeconds(3));
    }

    /// <summary>Counts reads, so the test can see how far the stream ran ahead of a slow learner.</summary>
    private sealed class Counting(IDataset inner) : IDataset
    {
        public int Reads;
        public DatasetSpec Spec => inner.Spec;
        public int Count => inner.Count;
        public string Describe(int index) => inner.Describe(index);
        public Sample Read(int index, DecodeContext context)
        {
            Interlocked.Increment(ref Reads);
            return inner.Read(index, context);
        }
    }

    [Fact]
    public async Task A_learner_slower_than_its_data_holds_the_stream_to_a_bounded_read_ahead()
    {
        var config = TestRuns.Tiny(Root, steps: 1000, every: 1000) with { Preset = "small" }; // a slower learner
        var parent = CreateTestProbe();
        var learner = parent.ChildActorOf(LearnerActor.Props(config, "bp", Path.Combine(Root, "bp"), parent.Ref));
        await parent.ExpectMsgAsync<CheckpointSaved>(TimeSpan.FromSeconds(30));
        await parent.ExpectMsgAsync<LearnerReady>();
        var data = new Counting(DatasetCatalog.Open("fashion-mnist", new ReaderOptions(EmbeddedData.Resolve("embedded"), Split.Pretrain)));
        var settings = new PipelineSettings { BatchSize = 16, Parallelism = 2, BufferBatches = 2 };
        DataFlows.Batches(data, settings, StreamPosition.Start, new DataMetrics())
            .RunWith(LearnerActor.FeedSink(learner, 1), Sys.Materializer());
        var reports = new List<StepReport>();
        for (int i = 0; i < 5; i++) reports.Add(await parent.FishForMessageAsync<StepReport>(_ => true, TimeSpan.FromSeconds(60)));
        var steps = reports[^1].Step;
        // Read so far: what was trained on, plus at most the buffered batches, one being grouped, decodes in flight and stage buffers.
        Assert.InRange(Volatile.Read(ref data.Reads), steps * 16, (steps + 5) * 16 + 2 + 32);
        // The learner mostly finds its next batch ready: it waits far less than it computes (one slow wait on a busy
        // 2-core machine is tolerated; a stream without read-ahead waits a whole decode every step).
        var waits = reports.Skip(1).Select(r => r.WaitSeconds).ToList();
        Assert.True(waits.Sum() < 0.5 * reports.Skip(1).Sum(r => r.StepSeconds) || waits.Count(w => w < 0.05) >= 3,
            $"a slow learner should find its next batch ready; waits {string.Join(", ", waits.Select(w => w.ToString("F3")))} s");
    }
}
