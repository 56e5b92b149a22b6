using System.Diagnostics;
using Akka;
using Akka.Actor;
using Akka.Event;
using Akka.Streams;
using Akka.Streams.Dsl;
using MetaMae.Actors.Checkpoints;
using MetaMae.Actors.Runs;
using MetaMae.Data;
using MetaMae.Model;
using MetaMae.Model.Checkpoints;
using MetaMae.Model.Distributed;
using MetaMae.Model.Training;
using MetaMae.Protocol;
using TorchSharp;
using static TorchSharp.torch;

namespace MetaMae.Actors;

/// <summary>
/// Owns the model and optimizer of one run and performs one MetaMAE step per batch, start to finish in one handler on
/// its pinned dispatcher (TorchSharp dispose scopes are per thread). It asks for the next batch only when ready
/// (ack-based sink), checkpoints every K steps and at the end, and on (re)start resumes from the latest valid
/// checkpoint, telling the run's coordinator (wherever it is) where the data must resume. Batches come from data
/// hosts as stream references, one per shard, merged by global batch index into the one-stream order.
/// <para>
/// As replica <c>rank</c> of a data-parallel group it trains its slice of each global batch and averages gradients with
/// the others through a ring all-reduce (<see cref="ReplicaEndpointActor"/> takes the peers' chunks); masking and dropout
/// draws follow from (seed, rank, step). Only rank 0 writes checkpoints and reports steps. When a collective fails or
/// the group is dissolved it says so (<see cref="ReplicaLeft"/>) and stops; the coordinator re-forms the group.
/// </para>
/// </summary>
internal sealed class LearnerActor : ReceiveActor
{
    private readonly RunSpec config;
    private readonly InputStatistics? inputStatistics;
    private readonly string runId;
    private readonly CheckpointStore store;
    private readonly ILoggingAdapter log = Context.GetLogger();
    private readonly IActorRef coordinator;
    private readonly Dictionary<int, FeedOffered[]> offers = [];
    /// <summary>Closes the current feed's batch-plane connections (a read blocked on a silent data node included).</summary>
    private CancellationTokenSource? feedConnections;
    private UniqueKillSwitch? feed;

    private MaskedAutoencoder? model;
    private optim.Optimizer? optimizer;
    private Generator? generator;
    private Device device = CPU;
    private long step;
    private StreamPosition position = StreamPosition.Start;
    private int generation = -1;
    /// <summary>Feeds below this generation are over: once the learner reports its position, nothing older may train.</summary>
    private int minGeneration;
    private readonly Stopwatch sinceAck = new();
    private bool finished;

    private readonly int rank, replicas, group;
    private readonly ChunkInbox inbox;
    private IActorRef endpoint = ActorRefs.Nobody;
    /// <summary>With collective_transport tcp: this replica's data plane, and its ring once the group forms.</summary>
    private RingListener? dataPlane;
    private TcpRingTransport? ring;
    private DataParallel parallel = DataParallel.Solo;
    private bool Grouped => replicas > 1;

    public LearnerActor(RunSpec config, string runId, string runDirectory, IActorRef coordinator, int rank = 0, int replicas = 1, int group = 0)
    {
        this.config = config;
        inputStatistics = config.DatasetSpec.Statistics;
        this.runId = runId;
        this.coordinator = coordinator;
        this.rank = rank;
        this.replicas = replicas;
        this.group = group;
        inbox = new ChunkInbox(TimeSpan.FromSeconds(config.CollectiveTimeoutSeconds));
        store = new CheckpointStore(runDirectory, config.KeepCheckpoints, w => log.Warning(w));

        Receive<FeedInit>(init => init.Generation >= generation && init.Generation >= minGeneration, init =>
        {
            generation = init.Generation;
            AckTo(Sender);
        });
        Receive<FeedInit>(_ => { }); // an older feed: never acked, so it sends nothing
        Receive<FeedOffered>(OnOffer);
        Receive<ReportPosition>(_ =>
        {
            // The feed that follows starts here: stop taking the current one, or batches trained after this answer
            // would be trained again.
            feed?.Shutdown();
            feed = null;
            minGeneration = generation + 1;
            coordinator.Tell(Ready());
        });
        Receive<FormGroup>(f => f.Group == group && f.Endpoints.Count == replicas, FormRing);
        Receive<FeedBatch>(f => f.Generation == generation && generation >= minGeneration && !finished, f => Train(f.Batch));
        Receive<FeedBatch>(_ => { }); // a batch of a stream that has been replaced, or after the last step: dropped
        Receive<FeedCompleted>(c => c.Generation == generation && generation >= minGeneration, _ =>
        {
            log.Warning("data stream ended at step {0} before the {1} steps asked for", step, config.Steps);
            Finish();
        });
        Receive<FeedFailed>(f => f.Generation == generation && generation >= minGeneration, f => coordinator.Tell(new FeedInterrupted(runId, f.Generation, f.Reason)));
        Receive<StopLearner>(_ =>
        {
            finished = true;
            if (rank != 0) return; // the group's final checkpoint is rank 0's
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

    public static Props Props(RunSpec config, string runId, string runDirectory, IActorRef coordinator, int rank = 0, int replicas = 1, int group = 0) =>
        Akka.Actor.Props.Create(() => new LearnerActor(config, runId, runDirectory, coordinator, rank, replicas, group))
            .WithDispatcher(MetaMaeHocon.LearnerDispatcher);

    private LearnerReady Ready() => new(runId, step, position, rank, group, Grouped ? endpoint : null, dataPlane?.Address);

    /// <summary>
    /// The group formed: the ring over the replicas' data planes when every one has one (the same list reaches every
    /// replica, so they all choose alike), else over messages. A ring that cannot be wired is left like a failed collective.
    /// </summary>
    private void FormRing(FormGroup f)
    {
        if (dataPlane is not null && f.DataPlanes is { } planes && planes.Count == replicas && planes.All(p => p is not null))
        {
            try
            {
                ring = TcpRingTransport.Connect(dataPlane, group, rank, planes!, inbox.Timeout, inbox.Dissolved, () => inbox.Reason);
            }
            catch (CollectiveAbortedException e)
            {
                LeaveGroup(e.Message, e.PeerLost);
                return;
            }
            parallel = new DataParallel(new RingCollective(group, rank, replicas, ring, TcpRingTransport.ChunkFloats), config.WirePrecision, config.BucketFloats);
        }
        else parallel = new DataParallel(new RingCollective(group, rank, replicas, ReplicaEndpointActor.SendTo(f.Endpoints), inbox), config.WirePrecision, config.BucketFloats);
    }

    /// <summary>The data plane binds the interface remoting advertises (--hostname), on the configured port range.</summary>
    private RingListener OpenDataPlane()
    {
        var host = ((ExtendedActorSystem)Context.System).Provider.DefaultAddress.Host ?? "127.0.0.1";
        var settings = Context.System.Settings.Config.GetConfig("metamae.data-plane");
        return new RingListener(host, host, settings?.GetInt("port", 0) ?? 0, settings?.GetInt("port-range", 16) ?? 16);
    }

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
        if (Grouped) endpoint = Context.ActorOf(ReplicaEndpointActor.Props(group, inbox), ReplicaEndpointActor.Name);
        if (Grouped && config.CollectiveTransport == CollectiveTransport.Tcp) dataPlane = OpenDataPlane();

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
            // Step 0: the randomly initialised encoder, the baseline evaluators probe (every replica draws the same one).
            if (rank == 0) Save(final: false);
        }
        finished = step >= config.Steps;
        coordinator.Tell(Ready());
        if (finished && rank == 0) coordinator.Tell(new LearnerFinished(runId, step, store.PathFor(step)));
    }

    /// <summary>
    /// Collects the shards of one feed generation; when all are in, pulls them as one stream in global batch order
    /// (shard k holds batches i with i mod N == k, so each round of N, sorted by index, is the next N batches).
    /// </summary>
    private void OnOffer(FeedOffered offer)
    {
        if (offer.Generation < generation || offer.Generation < minGeneration || offer.ShardCount < 1 || offer.Shard >= offer.ShardCount) return;
        if (!offers.TryGetValue(offer.Generation, out var shards)) offers[offer.Generation] = shards = new FeedOffered[offer.ShardCount];
        shards[offer.Shard] = offer;
        if (shards.Any(o => o is null)) return;
        foreach (var old in offers.Keys.Where(g => g <= offer.Generation).ToList()) offers.Remove(old);
        // The new generation counts from now: the old feed's completion (from this shutdown) and batches are stale.
        generation = offer.Generation;
        feed?.Shutdown();
        feedConnections?.Cancel();
        feedConnections = new CancellationTokenSource();
        var cancel = feedConnections.Token;
        var sources = shards.Select(o => o.Channel is { } channel ? Feeds.BatchPlaneSource.Of(channel, cancel)
            : o.Source?.Source ?? throw new InvalidOperationException($"feed {o.Generation} shard {o.Shard} was offered with neither a channel nor a stream")).ToList();
        var merged = sources.Count == 1
            ? sources[0]
            : Source.ZipN(sources).SelectMany(round => round.OrderBy(b => b.Sequence));
        feed = merged.ViaMaterialized(KillSwitches.Single<Batch>(), Keep.Right)
            .To(FeedSink(Self, offer.Generation)).Run(Context.Materializer());
    }

    protected override void PostStop()
    {
        feed?.Shutdown();
        feedConnections?.Cancel();
        ring?.Dispose();
        dataPlane?.Dispose();
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
        if (Grouped && parallel.IsSolo)
        {
            log.Warning("batch {0} arrived before group {1} formed: dropped", batch.Sequence, group);
            return;
        }
        var wait = sinceAck.Elapsed.TotalSeconds;
        long next = step + 1;
        StepMetrics metrics;
        int globalSize;
        try
        {
            // BatchNorm and NT-Xent need pairs: a batch whose records were (nearly) all bad is passed over, by every replica.
            var (usable, total) = parallel.AgreeOnBatch(batch.Size, minimum: 2);
            globalSize = total;
            if (!usable)
            {
                log.Warning("batch {0} has {1} readable record(s) here ({2} over the group): skipped", batch.Sequence, batch.Size, total);
                position = batch.End;
                AckTo(Sender);
                return;
            }
            FailPoints.Hit("learner.step", next);
            using var scope = NewDisposeScope();
            var x = ToTensor(batch);
            generator!.manual_seed(TrainStep.DrawSeed(config.Seed, rank, next));
            using var draws = MaskingDraws.Sample(batch.Size, model!.Input.NumTokens, generator, device);
            metrics = TrainStep.Run(model, optimizer!, x, draws, next, LearningRate.At(next, config.Lr, config.WarmupSteps), parallel);
        }
        catch (CollectiveAbortedException e)
        {
            LeaveGroup(e.Message, e.PeerLost);
            return;
        }
        step = next;
        position = batch.End;
        if (rank == 0)
            coordinator.Tell(new StepReport(runId, step, config.Steps, metrics.Total, metrics.Recon, metrics.Contrastive, metrics.Support,
                metrics.GradNorm, metrics.LearningRate, metrics.Seconds, wait, globalSize, position, metrics.CommunicationSeconds,
                metrics.ReconImage, metrics.ReconText, metrics.TotalCommunicationSeconds));

        if (Grouped && (step % config.CheckpointEvery == 0 || step >= config.Steps))
            coordinator.Tell(new ReplicaDigest(runId, group, rank, step, ParameterDigest.Of(model!)));
        if (step >= config.Steps)
        {
            Finish();
            return;
        }
        if (step % config.CheckpointEvery == 0 && rank == 0) Save(final: false);
        AckTo(Sender);
    }

    /// <summary>A replica that cannot go on with its group tells the coordinator, which re-forms the group, and stops.</summary>
    private void LeaveGroup(string reason, bool peerLost = false)
    {
        log.Warning("replica {0} of group {1} leaves at step {2}: {3}", rank, group, step, reason);
        finished = true;
        feed?.Shutdown();
        feed = null;
        coordinator.Tell(new ReplicaLeft(runId, group, rank, reason, peerLost));
        Context.Parent.Tell(new LearnerSupervisorActor.LeftGroup(reason));
        Context.Stop(Self);
    }

    private void Finish()
    {
        finished = true;
        if (rank != 0) return; // rank 0 writes the final checkpoint and reports the end for the group
        var path = Save(final: true);
        coordinator.Tell(new LearnerFinished(runId, step, path));
    }

    private string Save(bool final)
    {
        var meta = new CheckpointMeta
        {
            Step = step, Seed = config.Seed, Config = ModelConfigRecord.From(model!.Config), Data = new DataPosition(position.Epoch, position.Offset),
            RunId = runId, InputMean = inputStatistics?.Mean, InputStd = inputStatistics?.Std,
        };
        long at = step;
        var path = Checkpoint.Save(store.PathFor(step), model, optimizer, meta, generator, afterFile: _ => FailPoints.Hit("checkpoint.write", at));
        coordinator.Tell(new CheckpointSaved(runId, step, path, final));
        return path;
    }

    private Tensor ToTensor(Batch batch)
    {
        using var scope = NewDisposeScope();
        return model!.Input.Batch(batch.Values, batch.Ids, 0, batch.Size).to(device).MoveToOuterDisposeScope();
    }
}
