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
    /// <summary>Messages of the ack-based stream sink; <c>Generation</c> tells a restarted stream from a stale one.</summary>
    public sealed record StreamInit(int Generation);
    public sealed record Fed(int Generation, Batch Batch);
    public sealed record StreamCompleted(int Generation);
    public sealed record StreamFailed(int Generation, Exception Cause);
    public sealed record Ack
    {
        public static readonly Ack Instance = new();
    }

    /// <summary>Write a final checkpoint now and stop taking batches (Ctrl-C); answered with <see cref="Stopped"/>.</summary>
    public sealed record SaveAndStop
    {
        public static readonly SaveAndStop Instance = new();
    }
    public sealed record Stopped(long Step, string Checkpoint);

    /// <summary>The data stream failed (for example too many bad records): the run fails, restarting would not help.</summary>
    public sealed record DataFailed(string Reason);

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

        Receive<StreamInit>(init =>
        {
            generation = init.Generation;
            AckTo(Sender);
        });
        Receive<Fed>(f => f.Generation == generation && !finished, f => Train(f.Batch));
        Receive<Fed>(_ => { }); // a batch of a stream that has been replaced, or after the last step: dropped
        Receive<StreamCompleted>(c => c.Generation == generation, _ =>
        {
            log.Warning("data stream ended at step {0} before the {1} steps asked for", step, config.Steps);
            Finish();
        });
        Receive<StreamFailed>(f => f.Generation == generation, f => Context.Parent.Tell(new DataFailed(f.Cause.Message)));
        Receive<SaveAndStop>(_ =>
        {
            finished = true;
            var path = Save(final: true);
            Sender.Tell(new Stopped(step, path));
        });
    }

    /// <summary>
    /// The ack-based sink that feeds a learner: one batch in flight, and no prefetch (the sink's input buffer would
    /// otherwise hold 16 batches ahead of the learner).
    /// </summary>
    public static Sink<Batch, NotUsed> FeedSink(IActorRef learner, int generation) =>
        Flow.Create<Batch>().Select(b => new Fed(generation, b))
            .To(Sink.ActorRefWithAck<Fed>(learner, new StreamInit(generation), LearnerActor.Ack.Instance, new StreamCompleted(generation),
                e => new StreamFailed(generation, e)).WithAttributes(Attributes.CreateInputBuffer(1, 1)));

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
        stream.Tell(LearnerActor.Ack.Instance);
    }

    private void Train(Batch batch)
    {
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
