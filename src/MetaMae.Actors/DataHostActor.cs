using Akka.Actor;
using Akka.Event;
using Akka.Streams;
using Akka.Streams.Dsl;
using MetaMae.Actors.Runs;
using MetaMae.Data;
using MetaMae.Data.Pipeline;
using MetaMae.Data.Readers;
using MetaMae.Protocol;

namespace MetaMae.Actors;

/// <summary>
/// Runs the tokenizing pipelines of a data node: for each <see cref="OpenFeed"/> it decodes its shard of the run's
/// batches from the given position and offers them to the learner, back-pressured across the network: on its batch
/// plane (<see cref="Feeds.BatchPlaneServer"/>) to a learner on another node, as a stream reference to one on this
/// node (or to every learner with <c>metamae.data-plane.batches = off</c>). A newer generation of a run's feed replaces the older one of the same slice (a data-parallel group has
/// one feed per replica, each making that replica's slice of every global batch). Pipeline failures (too many bad records, an
/// unreadable data set) go to the coordinator, which fails the run; counters go to it every few seconds.
/// </summary>
internal sealed class DataHostActor : SteadyActor, IWithTimers
{
    public const string Name = "data-host";

    private sealed class RunFeeds
    {
        public required IDataset Dataset { get; init; }
        public required RunSpec Config { get; init; }
        public DataMetrics Metrics { get; } = new();
        public IActorRef Coordinator { get; set; } = ActorRefs.Nobody;
        /// <summary>The live feed of each slice (replica), with its generation.</summary>
        public Dictionary<int, (int Generation, UniqueKillSwitch Kill)> Feeds { get; } = [];
        public int SliceCount { get; set; } = 1;

        public void ShutdownAll()
        {
            foreach (var (_, kill) in Feeds.Values) kill.Shutdown();
            Feeds.Clear();
        }
    }

    private sealed record Failed(string RunId, int Generation, string Reason);
    private sealed record Tick;

    private readonly Dictionary<string, RunFeeds> runs = [];
    private readonly ILoggingAdapter log = Context.GetLogger();
    private readonly string node;
    /// <summary>Where learners on other nodes pull their feeds (null: the batch plane is off, every feed is a stream reference).</summary>
    private Feeds.BatchPlaneServer? plane;
    private readonly IMaterializer materializer = Context.Materializer();

    public ITimerScheduler Timers { get; set; } = null!;

    public DataHostActor()
    {
        node = (Context.System as ExtendedActorSystem)?.Provider.DefaultAddress.HostPort() ?? Context.System.Name; // system@host:port
        Receive<OpenFeed>(Open);
        Receive<Failed>(f =>
        {
            if (runs.TryGetValue(f.RunId, out var r) && r.Feeds.Values.Any(x => x.Generation == f.Generation))
                r.Coordinator.Tell(new DataStreamFailed(f.RunId, f.Reason));
        });
        Receive<Tick>(_ =>
        {
            foreach (var (id, r) in runs)
            {
                var m = r.Metrics.Snapshot();
                r.Coordinator.Tell(new DataReport(id, node, m.RecordsRead, m.Samples, m.BadRecords, m.Batches, m.QueuedSamples,
                    m.SamplesPerSecond, m.BytesPerSecond));
            }
        });
        Receive<RunEnded>(e =>
        {
            if (runs.Remove(e.RunId, out var r)) r.ShutdownAll();
        });
    }

    protected override void PreStart()
    {
        Timers.StartPeriodicTimer("metrics", new Tick(), TimeSpan.FromSeconds(2));
        var config = Context.System.Settings.Config;
        if (config.GetBoolean("metamae.data-plane.batches", true))
        {
            // The interface remoting advertises (--hostname), on the data plane's port range (--data-port).
            var host = ((ExtendedActorSystem)Context.System).Provider.DefaultAddress.Host ?? "127.0.0.1";
            plane = new Feeds.BatchPlaneServer(host, host, config.GetInt("metamae.data-plane.port", 0), config.GetInt("metamae.data-plane.port-range", 16),
                config.GetTimeSpan("akka.stream.materializer.stream-ref.subscription-timeout", TimeSpan.FromSeconds(30)), log);
            log.Info("batch plane on {0}", plane.Address);
        }
    }

    protected override void PostStop()
    {
        foreach (var r in runs.Values) r.ShutdownAll();
        plane?.Dispose();
    }

    /// <summary>Where a data set is read from: one's own data's path, a catalog set's root.</summary>
    private static string Where(DatasetRef d) => d.Format is null ? d.Root : d.Path ?? d.Root;

    /// <summary>A feed that could not be opened fails the run, as the data node's own errors do.</summary>
    protected override void Refuse(object message, string reason)
    {
        if (message is OpenFeed o) o.Coordinator.Tell(new DataStreamFailed(o.RunId, $"the data node could not open the feed: {reason}"));
    }

    private void Open(OpenFeed o)
    {
        if (!runs.TryGetValue(o.RunId, out var run))
        {
            RunSpec config;
            IDataset dataset;
            if (o.Spec.Refusal(Roles.Data) is { } refused)
            {
                o.Coordinator.Tell(new DataStreamFailed(o.RunId, $"the data node refused the config: {refused}"));
                return;
            }
            config = o.Spec;
            try
            {
                FailPoints.Hit("data.open");
                dataset = DatasetCatalog.Open(config.Dataset, Split.Pretrain);
                if (dataset.Count == 0) throw new InvalidDataException($"data set {config.Dataset.Name} at {Where(config.Dataset)} has no records to pretrain on");
                foreach (var note in dataset.Notes.Take(20)) log.Warning("data set {0}: skipped {1}", config.Dataset.Name, note);
                if (dataset.Notes.Count > 20) log.Warning("data set {0}: skipped {1} more", config.Dataset.Name, dataset.Notes.Count - 20);
            }
            catch (Exception e)
            {
                o.Coordinator.Tell(new DataStreamFailed(o.RunId,
                    $"opening data set {config.Dataset.Name} at {Where(config.Dataset)} failed: {Failures.Describe(e)}"));
                return;
            }
            runs[o.RunId] = run = new RunFeeds { Dataset = dataset, Config = config };
        }
        if (run.Feeds.TryGetValue(o.Slice, out var current) && o.Generation < current.Generation) return; // overtaken by a newer one
        if (o.SliceCount != run.SliceCount) run.ShutdownAll(); // the group re-formed with another size: every old slice is over
        run.SliceCount = o.SliceCount;
        run.Coordinator = o.Coordinator;
        if (run.Feeds.Remove(o.Slice, out var replaced)) replaced.Kill.Shutdown();
        var spec = run.Config;
        var settings = new PipelineSettings
        {
            BatchSize = o.GlobalBatch > 0 ? o.GlobalBatch : spec.EffectiveBatchSize, Seed = spec.Seed, Parallelism = spec.DataParallelism,
            MaxBadFraction = spec.MaxBadFraction, MaxAbsValue = spec.MaxAbsValue, ShardIndex = o.Shard, ShardCount = o.ShardCount,
            SliceIndex = o.Slice, SliceCount = o.SliceCount,
        };
        var self = Self;
        var runId = o.RunId;
        var generation = o.Generation;
        try
        {
            FailPoints.Hit("data.stream-start");
            var pipeline = DataFlows.Batches(run.Dataset, settings, o.Start, run.Metrics, m => log.Warning(m))
                .ViaMaterialized(KillSwitches.Single<Batch>(), Keep.Right)
                .WatchTermination((k, done) =>
                {
                    done.ContinueWith(t =>
                    {
                        // The pipeline's own failures (bad records over the limit, a reader's error) fail the run; the end of
                        // the learner's side (a restart, a node gone: stream-reference errors) only ends this feed.
                        if (t.IsFaulted && t.Exception!.GetBaseException() is var e && e.GetType().Namespace?.StartsWith("Akka.Streams", StringComparison.Ordinal) != true)
                            self.Tell(new Failed(runId, generation, Failures.Describe(e)));
                    }, TaskScheduler.Default);
                    return k;
                });
            var learner = o.Learner;
            // A learner on another node pulls its batches' bytes from the batch plane; one on this node, through a local
            // stream reference (no copy at all).
            if (plane is not null && !learner.Path.Address.HasLocalScope)
            {
                var (kill, queue) = pipeline.ToMaterialized(Feeds.BatchPlaneServer.Sink(), Keep.Both).Run(materializer);
                run.Feeds[o.Slice] = (generation, kill);
                var channel = plane.Offer(queue, kill, $"feed {generation} of {runId} (slice {o.Slice})");
                learner.Tell(new FeedOffered(runId, generation, o.Shard, o.ShardCount, null, channel));
            }
            else
            {
                var (kill, sourceRef) = pipeline.ToMaterialized(StreamRefs.SourceRef<Batch>(), Keep.Both).Run(materializer);
                run.Feeds[o.Slice] = (generation, kill);
                sourceRef.ContinueWith(t =>
                {
                    if (t.IsCompletedSuccessfully) learner.Tell(new FeedOffered(runId, generation, o.Shard, o.ShardCount, t.Result));
                    else self.Tell(new Failed(runId, generation, $"offering the stream failed: {t.Exception?.GetBaseException().Message}"));
                }, TaskScheduler.Default);
            }
            log.Info("feed {0} of {1}: shard {2} of {3}, slice {4} of {5}, from {6}", [generation, runId, o.Shard, o.ShardCount, o.Slice, o.SliceCount, o.Start]);
        }
        catch (Exception e)
        {
            o.Coordinator.Tell(new DataStreamFailed(o.RunId, $"starting the data stream failed: {Failures.Describe(e)}"));
        }
    }
}
