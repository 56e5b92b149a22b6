using System.Diagnostics;
using Akka;
using Akka.Actor;
using Akka.Event;
using Akka.Streams;
using Akka.Streams.Dsl;
using MetaMae.Actors.Checkpoints;
using MetaMae.Actors.Runs;
using MetaMae.Model;
using MetaMae.Model.Checkpoints;
using MetaMae.Model.Training;
using MetaMae.Protocol;
using TorchSharp;
using static TorchSharp.torch;

namespace MetaMae.Actors;

/// <summary>
/// Owns the model and optimizer of one run and performs one MetaMAE step per batch, start to finish in one handler on
/// its pinned dispatcher (TorchSharp dispose scopes are per thread). It asks for the next batch only when ready
/// (ack-based sink), checkpoints every K steps and at the end, and on (re)start resumes from the latest valid
/// checkpoint, telling its parent where the data must resume.
/// </summary>
public sealed class LearnerActor : ReceiveActor
{
    private readonly RunConfig config;
    private readonly string runId;
    private readonly CheckpointStore store;
    private readonly ILoggingAdapter log = Context.GetLogger();

    private MaskedAutoencoder? model;
    private optim.Optimizer? optimizer;
    private Generator? generator;
    private Device device = CPU;
    private long step;
    private StreamPosition position = StreamPosition.Start;
    private int generation = -1;
    private readonly Stopwatch sinceAck = new();
    private bool finished;

    public LearnerActor(RunConfig config, string runId, string runDirectory)
    {
        this.config = config;
        this.runId = runId;
        store = new CheckpointStore(runDirectory, config.KeepCheckpoints, w => log.Warning(w));

        Receive<FeedInit>(init =>
        {
            generation = init.Generation;
            AckTo(Sender);
        });
        Receive<FeedBatch>(f => f.Generation == generation && !finished, f => Train(f.Batch));
        Receive<FeedBatch>(_ => { }); // a batch of a stream that has been replaced, or after the last step: dropped
        Receive<FeedCompleted>(c => c.Generation == generation, _ =>
        {
            log.Warning("data stream ended at step {0} before the {1} steps asked for", step, config.Steps);
            Finish();
        });
        Receive<FeedFailed>(f => f.Generation == generation, f => Context.Parent.Tell(new DataStreamFailed(runId, f.Reason)));
        Receive<StopLearner>(_ =>
        {
            finished = true;
            var path = Save(final: true);
            Sender.Tell(new LearnerStopped(runId, step, path));
        });
    }

    /// <summary>
    /// The ack-based sink that feeds a learner: one batch in flight, and no prefetch (the sink's input buffer would
    /// otherwise hold 16 batches ahead of the learner).
    /// </summary>
    public static Sink<Batch, NotUsed> FeedSink(IActorRef learner, int generation) =>
        Flow.Create<Batch>().Select(b => new FeedBatch(generation, b))
            .To(Sink.ActorRefWithAck<FeedBatch>(learner, new FeedInit(generation), FeedAck.Instance, new FeedCompleted(generation),
                e => new FeedFailed(generation, e.Message)).WithAttributes(Attributes.CreateInputBuffer(1, 1)));

    public static Props Props(RunConfig config, string runId, string runDirectory) =>
        Akka.Actor.Props.Create(() => new LearnerActor(config, runId, runDirectory)).WithDispatcher(MetaMaeHocon.LearnerDispatcher);

    protected override void PreStart()
    {
        TorchRuntime.SetThreads(config.Threads);
        device = TorchRuntime.SelectDevice(config.Device);
        var modelConfig = config.ToModelConfig();
        model = MaskedAutoencoder.Create(modelConfig, config.Seed);
        model.to(device);
        generator = new Generator((ulong)config.Seed, device);
        model.DropoutGenerator = generator;
        optimizer = Optimizers.AdamW(model, config.Lr, config.WeightDecay);

        if (store.LatestValid() is { } latest)
        {
            Checkpoint.LoadWeights(latest.Path, model);
            Checkpoint.LoadOptimizer(latest.Path, optimizer);
            Checkpoint.LoadRng(latest.Path, generator);
            step = latest.Meta.Step;
            position = new StreamPosition(latest.Meta.Data.Epoch, latest.Meta.Data.Offset);
            log.Info("learner resumes from {0} (step {1}, data {2})", latest.Path, step, position);
            FailPoints.Hit("learner.resume", step);
        }
        else
        {
            step = 0;
            position = StreamPosition.Start;
            Save(final: false); // step 0: the randomly initialised encoder, the baseline evaluators probe
        }
        finished = step >= config.Steps;
        Context.Parent.Tell(new LearnerReady(runId, step, position));
        if (finished) Context.Parent.Tell(new LearnerFinished(runId, step, store.PathFor(step)));
    }

    protected override void PostStop()
    {
        optimizer?.Dispose();
        model?.Dispose();
        generator?.Dispose();
    }

    private void AckTo(IActorRef stream)
    {
        sinceAck.Restart();
        stream.Tell(FeedAck.Instance);
    }

    private void Train(Batch batch)
    {
        if (batch.Size < 2)
        {
            // Its records were (nearly) all bad: BatchNorm and NT-Xent need pairs, so the batch is passed over, not trained.
            log.Warning("batch {0} has {1} readable record(s): skipped", batch.Sequence, batch.Size);
            position = batch.End;
            AckTo(Sender);
            return;
        }
        var wait = sinceAck.Elapsed.TotalSeconds;
        long next = step + 1;
        FailPoints.Hit("learner.step", next);

        StepMetrics metrics;
        using (var scope = NewDisposeScope())
        {
            var x = ToTensor(batch);
            using var draws = MaskingDraws.Sample(batch.Size, model!.Input.NumTokens, generator, device);
            metrics = TrainStep.Run(model, optimizer!, x, draws, next, LearningRate.At(next, config.Lr, config.WarmupSteps));
        }
        step = next;
        position = batch.End;
        var report = new StepReport(runId, step, config.Steps, metrics.Total, metrics.Recon, metrics.Contrastive, metrics.Support,
            metrics.GradNorm, metrics.LearningRate, metrics.Seconds, wait, batch.Size, position);
        Context.Parent.Tell(report);

        if (step >= config.Steps)
        {
            Finish();
            return;
        }
        if (step % config.CheckpointEvery == 0) Save(final: false);
        AckTo(Sender);
    }

    private void Finish()
    {
        finished = true;
        var path = Save(final: true);
        Context.Parent.Tell(new LearnerFinished(runId, step, path));
    }

    private string Save(bool final)
    {
        var meta = new CheckpointMeta
        {
            Step = step, Seed = config.Seed, Config = ModelConfigRecord.From(model!.Config), Data = new DataPosition(position.Epoch, position.Offset),
            RunId = runId,
        };
        long at = step;
        var path = Checkpoint.Save(store.PathFor(step), model, optimizer, meta, generator, afterFile: _ => FailPoints.Hit("checkpoint.write", at));
        Context.Parent.Tell(new CheckpointSaved(runId, step, path, final));
        return path;
    }

    private Tensor ToTensor(Batch batch)
    {
        long[] shape = [batch.Size, .. batch.SampleShape.Select(s => (long)s)];
        var t = batch.Ids is not null ? tensor(batch.Ids).reshape(shape) : tensor(batch.Values!).reshape(shape);
        return t.to(device);
    }
}
