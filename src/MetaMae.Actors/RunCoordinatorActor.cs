using Akka.Actor;
using Akka.Event;
using Akka.Hosting;
using Akka.Streams;
using Akka.Streams.Dsl;
using MetaMae.Actors.Checkpoints;
using MetaMae.Actors.Reporting;
using MetaMae.Actors.Runs;
using MetaMae.Data;
using MetaMae.Data.Pipeline;
using MetaMae.Data.Readers;
using MetaMae.Protocol;

namespace MetaMae.Actors;

/// <summary>How a run starts: a directory lock the caller already holds, and whether corrupt checkpoints may be set aside.</summary>
public sealed record RunStartOptions
{
    /// <summary>The run directory's lock, taken by the caller (the command takes it before printing anything).</summary>
    public RunDirectoryLock? Lock { get; init; }
    /// <summary>When every checkpoint of the directory is corrupt: move them aside and start over instead of failing.</summary>
    public bool FromScratch { get; init; }

    public static readonly RunStartOptions Default = new();
}

/// <summary>
/// Owns one run: its directory (locked for this process) and durable record, the data stream, the learner (restarted
/// from the latest valid checkpoint when it fails) and the evaluators. Replies <see cref="RunFinished"/> to whoever
/// sent <see cref="StartRun"/> once the learner is done and every expected evaluation has reported; step reports go to
/// the optional progress listener.
/// <para>
/// Whatever fails, the run ends: an exception in any handler (opening the record or the data, starting the stream,
/// writing metrics, pruning) fails the run with the stage and cause in <see cref="RunFinished.Error"/>, in the record
/// and in report.md, and the coordinator stops. It is never restarted (a restarted coordinator would forget who waits).
/// </para>
/// </summary>
public sealed class RunCoordinatorActor : ReceiveActor
{
    private readonly RunConfig config;
    private readonly string runId;
    private readonly string runDirectory;
    private readonly IActorRef? progress;
    private readonly RunStartOptions options;
    private readonly ILoggingAdapter log = Context.GetLogger();
    private readonly List<IActorRef> waiting = [];
    private readonly List<EvaluationResult> results = [];
    private readonly List<EvaluationFailed> failedProbes = [];
    private readonly HashSet<(long Step, string Dataset)> pending = [];
    private IActorRef? probes;
    private readonly DataMetrics dataMetrics = new();
    private RunDirectoryLock? directoryLock;
    private bool ownsLock;
    private RunStore? store;
    private RunArtifacts? artifacts;
    private CheckpointStore? checkpoints;
    private IActorRef? learner;
    private IDataset? dataset;
    private UniqueKillSwitch? stream;
    private int generation;
    private int restarts;
    private long step;
    private bool learnerDone;
    private bool finished;
    private RunStatus status = RunStatus.Running;
    private string? error;
    /// <summary>What the coordinator is doing, named in the error when it fails there.</summary>
    private string stage = "starting";

    public RunCoordinatorActor(RunConfig config, string runId, string runDirectory, IActorRef? progress, RunStartOptions? options)
    {
        this.config = config;
        this.runId = runId;
        this.runDirectory = runDirectory;
        this.progress = progress;
        this.options = options ?? RunStartOptions.Default;

        Receive<StartRun>(_ =>
        {
            waiting.Add(Sender);
            if (learner is null && !finished) Begin();
        });
        Receive<LearnerReady>(r => r.RunId == runId, r =>
        {
            if (status == RunStatus.Stopped) learner?.Tell(StopLearner.Instance); // restarted while stopping
            else StartStream(r);
        });
        Receive<StepReport>(r =>
        {
            step = r.Step;
            stage = "writing metrics.jsonl and TensorBoard events";
            artifacts!.Step(r);
            stage = "recording the step in the run record";
            if (r.Step % 10 == 0 || r.Step == r.TotalSteps) store!.UpdateStep(runId, r.Step);
            stage = "writing data metrics";
            if (r.Step % 50 == 0 || r.Step == r.TotalSteps) artifacts.Data(r.Step, dataMetrics.Snapshot());
            progress?.Tell(r);
        });
        Receive<CheckpointSaved>(c =>
        {
            stage = $"recording checkpoint {c.Path}";
            store!.AddCheckpoint(runId, c.Step, c.Path, valid: true);
            progress?.Tell(c);
            if (ShouldEvaluate(c.Step, c.Final)) Probe(c);
            Prune();
        });
        Receive<EvaluationResult>(r =>
        {
            if (!pending.Remove((r.Step, r.Dataset))) return; // abandoned by a stop
            results.RemoveAll(x => x.Step == r.Step && x.Dataset == r.Dataset);
            results.Add(r);
            stage = "recording an evaluation";
            store!.AddEvaluation(r);
            artifacts!.Evaluation(r);
            progress?.Tell(r);
            Prune();
            TryFinish();
        });
        Receive<EvaluationFailed>(f =>
        {
            if (!pending.Remove((f.Step, f.Dataset))) return;
            failedProbes.Add(f);
            log.Warning("evaluation on {0} at step {1} failed: {2}", f.Dataset, f.Step, f.Reason);
            progress?.Tell(f);
            Prune();
            TryFinish();
        });
        Receive<LearnerFinished>(f =>
        {
            step = f.Step;
            learnerDone = true;
            StopStream();
            if (status == RunStatus.Running) status = RunStatus.Completed;
            TryFinish();
        });
        Receive<StopRun>(s =>
        {
            if (finished) return;
            log.Info("stopping run {0}: {1}", runId, s.Reason);
            StopStream();
            pending.Clear(); // probes in flight are redone by `resume`
            status = RunStatus.Stopped;
            if (learner is not null && !learnerDone) learner.Tell(StopLearner.Instance);
            else Finish();
        });
        Receive<LearnerStopped>(s =>
        {
            step = s.Step;
            learnerDone = true;
            Finish();
        });
        Receive<DataStreamFailed>(f => Fail($"data stream failed: {f.Reason}"));
        Receive<Terminated>(t => t.ActorRef.Equals(learner) && !learnerDone, _ =>
            Fail(error ?? $"learner stopped after {restarts} restart(s)"));
        Receive<Terminated>(_ => { });
    }

    public static Props Props(RunConfig config, string runId, string runDirectory, IActorRef? progress = null, RunStartOptions? options = null) =>
        Akka.Actor.Props.Create(() => new RunCoordinatorActor(config, runId, runDirectory, progress, options));

    /// <summary>Any exception in a handler ends the run, failed, with the stage it happened in.</summary>
    protected override bool AroundReceive(Receive receive, object message)
    {
        if (finished) return true; // the run has ended: late reports of children are of no use
        try
        {
            return base.AroundReceive(receive, message);
        }
        catch (Exception e)
        {
            Fail($"{stage} failed: {Describe(e)}");
            return true;
        }
    }

    private static string Describe(Exception e) => e switch
    {
        AggregateException { InnerExceptions.Count: 1 } a => Describe(a.InnerExceptions[0]),
        IOException or UnauthorizedAccessException or ArgumentException or FormatException or InvalidDataException
            or DataLayoutException or FailPointException or InvalidOperationException => e.Message,
        _ => $"{e.GetType().Name}: {e.Message}",
    };

    /// <summary>
    /// Restart the learner (it reloads the latest valid checkpoint) on any failure, up to max_learner_restarts;
    /// a non-finite loss or a broken configuration would only repeat, so those stop it. The learner is the only child
    /// that can fail: the probe scheduler handles its evaluators' crashes itself and never throws.
    /// </summary>
    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(e =>
    {
        error = $"learner failed: {Describe(e is ActorInitializationException { InnerException: { } inner } ? inner : e)}";
        if (e is Model.Training.NonFiniteLossException or ConfigException or ActorInitializationException { InnerException: ConfigException })
            return Directive.Stop;
        if (restarts >= config.MaxLearnerRestarts)
        {
            error += $" (after {restarts} restart(s), the most max_learner_restarts allows)";
            return Directive.Stop;
        }
        restarts++;
        log.Warning("learner failed ({0}); restart {1} of at most {2} from the latest valid checkpoint", e.Message, restarts, config.MaxLearnerRestarts);
        StopStream();
        return Directive.Restart;
    });

    private void Begin()
    {
        stage = $"locking run directory {runDirectory}";
        directoryLock = options.Lock;
        if (directoryLock is null)
        {
            directoryLock = RunDirectoryLock.Acquire(runDirectory);
            ownsLock = true;
        }
        if (directoryLock.Previous is { } dead)
            log.Warning("run directory {0} was held by {1}, which is no longer running; taking it over", runDirectory, dead);
        // From here on the directory is ours: a failure may write its report and record.
        stage = "writing config.json";
        File.WriteAllText(Path.Combine(runDirectory, "config.json"), config.ToJson());
        artifacts = new RunArtifacts(runDirectory);
        var runsDb = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(runDirectory))!, "runs.db");
        stage = $"opening the run record {runsDb}";
        store = new RunStore(runsDb);
        store.StartRun(runId, config.Name, config.Steps, Path.GetFullPath(runDirectory), config.ToJson());

        stage = "checking checkpoints";
        checkpoints = new CheckpointStore(runDirectory, config.KeepCheckpoints, w => log.Warning(w));
        foreach (var action in checkpoints.CleanLeftovers()) log.Warning("{0}", action);
        var onDisk = checkpoints.List();
        var valid = onDisk.Where(c => IsValid(c.Path)).ToList();
        if (onDisk.Count > 0 && valid.Count == 0)
        {
            if (!options.FromScratch)
                throw new InvalidDataException(
                    $"all {onDisk.Count} checkpoint(s) in {checkpoints.Directory} are corrupt (they fail their manifests); nothing to resume from. " +
                    "`metamae resume --from-scratch RUN_DIR` moves them to corrupt-checkpoints/ and starts over");
            log.Warning("moved {0} corrupt checkpoint(s) to corrupt-checkpoints/; starting over from step 0", checkpoints.MoveAllAside());
        }
        store.SyncCheckpoints(runId, valid);
        foreach (var r in store.Evaluations(runId)) results.Add(r); // a resumed run keeps what was measured before

        stage = $"opening data set {config.Dataset.Name} at {config.Dataset.Root}";
        FailPoints.Hit("data.open");
        dataset = DatasetCatalog.Open(config.Dataset.Name, new ReaderOptions(EmbeddedData.Resolve(config.Dataset.Root), Split.Pretrain, config.Seed));
        if (dataset.Count == 0) throw new InvalidDataException($"data set {config.Dataset.Name} at {config.Dataset.Root} has no records to pretrain on");

        stage = "starting the probe scheduler and the learner";
        if (config.Evaluation.Datasets.Count > 0)
            probes = Context.ActorOf(ProbeSchedulerActor.Props(runId, config.Evaluation, config.ToModelConfig(), config.MaxAbsValue), "probes");
        learner = Context.ActorOf(LearnerActor.Props(config, runId, runDirectory), "learner");
        Context.Watch(learner);
        // Probes a kill interrupted (or that failed before) are redone on the checkpoints still on disk.
        foreach (var (s, path) in valid.OrderBy(c => c.Step))
            if (ShouldEvaluate(s, final: s >= config.Steps)) Probe(new CheckpointSaved(runId, s, path, s >= config.Steps));
        stage = "running";
    }

    /// <summary>Silent: the learner warns about each corrupt checkpoint it skips; here only the count matters.</summary>
    private static bool IsValid(string path)
    {
        try
        {
            Model.Checkpoints.Checkpoint.Verify(path);
            return true;
        }
        catch (Model.Checkpoints.CorruptCheckpointException)
        {
            return false;
        }
    }

    private bool ShouldEvaluate(long checkpointStep, bool final) =>
        probes is not null && status == RunStatus.Running
        && (config.Evaluation.When == "every" || final || (checkpointStep == 0 && config.Evaluation.IncludeRandomInit));

    /// <summary>Sends the checkpoint to every evaluator that has no result for it yet.</summary>
    private void Probe(CheckpointSaved c)
    {
        foreach (var ds in config.Evaluation.Datasets)
        {
            if (results.Any(r => r.Step == c.Step && r.Dataset == ds.Name) || !pending.Add((c.Step, ds.Name))) continue;
            failedProbes.RemoveAll(f => f.Step == c.Step && f.Dataset == ds.Name);
            probes!.Tell(new ProbeCheckpoint(c, ds.Name));
        }
    }

    /// <summary>Prunes old checkpoints, never one a probe still has to read, and keeps the record in step with the disk.</summary>
    private void Prune()
    {
        stage = "pruning checkpoints";
        foreach (var deleted in checkpoints!.Prune(BestStep(), pending.Select(p => p.Step)))
            store!.RemoveCheckpoint(runId, deleted);
        stage = "running";
    }

    private long? BestStep()
    {
        var first = config.Evaluation.Datasets.FirstOrDefault()?.Name;
        return results.Where(r => r.Dataset == first && r.Step > 0).OrderByDescending(r => r.Value).Select(r => (long?)r.Step).FirstOrDefault();
    }

    /// <summary>(Re)starts the data stream at the learner's position; a stream from before a restart is killed first.</summary>
    private void StartStream(LearnerReady ready)
    {
        StopStream();
        step = ready.Step;
        if (step >= config.Steps) return;
        stage = "starting the data stream";
        FailPoints.Hit("data.stream-start");
        int gen = ++generation;
        var settings = new PipelineSettings
        {
            BatchSize = config.EffectiveBatchSize, Seed = config.Seed, Parallelism = config.DataParallelism, MaxBadFraction = config.MaxBadFraction,
            MaxAbsValue = config.MaxAbsValue,
        };
        var learnerRef = learner!;
        stream = DataFlows.Batches(dataset!, settings, ready.Position, dataMetrics, m => log.Warning(m))
            .ViaMaterialized(KillSwitches.Single<Batch>(), Keep.Right)
            .To(LearnerActor.FeedSink(learnerRef, gen))
            .Run(Context.Materializer());
        log.Info("data stream {0} starts at {1} for learner step {2}", gen, ready.Position, ready.Step);
        stage = "running";
    }

    private void StopStream()
    {
        stream?.Shutdown();
        stream = null;
    }

    private void TryFinish()
    {
        if (learnerDone && pending.Count == 0) Finish();
    }

    private void Fail(string reason)
    {
        if (finished) return;
        if (status == RunStatus.Failed) return;
        status = RunStatus.Failed;
        error = reason;
        log.Error("run {0} failed: {1}", runId, reason);
        StopStream();
        Finish();
    }

    /// <summary>
    /// Ends the run whatever else fails: the report, plots and record are written as far as they can be (a failure
    /// there is added to the error), then every waiter is answered and the coordinator stops.
    /// </summary>
    private void Finish()
    {
        if (finished) return;
        finished = true;
        StopStream();
        if (status == RunStatus.Completed && failedProbes.Count > 0)
        {
            status = RunStatus.Failed;
            error = $"pretraining completed at step {step}, but {failedProbes.Count} probe(s) failed: " +
                    string.Join("; ", failedProbes.OrderBy(f => f.Step).Take(5).Select(f => $"step {f.Step} on {f.Dataset}: {f.Reason}")) +
                    (failedProbes.Count > 5 ? "; ..." : "") + ". `metamae resume` redoes them";
        }
        var ordered = results.OrderBy(r => r.Dataset).ThenBy(r => r.Step).ToList();
        var problems = new List<string>();
        void Try(string what, Action action)
        {
            try
            {
                action();
            }
            catch (Exception e)
            {
                log.Error("could not {0}: {1}", what, e.Message);
                problems.Add($"could not {what}: {Describe(e)}");
            }
        }
        Try("write the plots", () => artifacts?.Plots(ordered));
        Try("write report.md", () => artifacts?.Report(runId, status, step, config.ToJson(), ordered, error, failedProbes));
        Try("update the run record", () => store?.FinishRun(runId, status, step, error));
        var message = problems.Count == 0 ? error : string.Join("; ", new[] { error }.Concat(problems).Where(m => m is not null));
        var done = new RunFinished(runId, status, step, Path.GetFullPath(runDirectory), ordered, message);
        // Files closed and the directory released before anyone hears the run ended, so they can resume it at once.
        if (learner is not null) Context.Stop(learner);
        if (probes is not null) Context.Stop(probes);
        Release();
        foreach (var w in waiting) w.Tell(done);
        progress?.Tell(done);
        Context.Stop(Self);
    }

    protected override void PostStop() => Release();

    /// <summary>Stops the stream, closes files and frees the directory; never throws (a full disk fails the flush of a close).</summary>
    private void Release()
    {
        void Quietly(Action action)
        {
            try
            {
                action();
            }
            catch (Exception e)
            {
                log.Warning("while closing the run: {0}", e.Message);
            }
        }
        Quietly(StopStream);
        Quietly(() => artifacts?.Dispose());
        artifacts = null;
        Quietly(() => store?.Dispose());
        store = null;
        if (ownsLock) Quietly(() => directoryLock?.Dispose());
        ownsLock = false;
    }
}

/// <summary>Akka.Hosting wiring: the pipeline's dispatchers and one run's coordinator, registered for lookup.</summary>
public static class RunCoordinatorHosting
{
    /// <summary>
    /// The pipeline's dispatchers (HOCON: Akka.Hosting has no API for them) and the serializer of every
    /// <see cref="IMetaMaeMessage"/>, bound through the marker interface.
    /// </summary>
    public static AkkaConfigurationBuilder WithMetaMaeDispatchers(this AkkaConfigurationBuilder builder) =>
        builder.AddHocon(MetaMaeHocon.Dispatchers, HoconAddMode.Prepend)
            .WithCustomSerializer("metamae", [typeof(IMetaMaeMessage)], system => new MetaMaeSerializer(system));

    /// <summary>
    /// Starts a <see cref="RunCoordinatorActor"/> named "run-coordinator" for <paramref name="config"/> and registers it
    /// in the <see cref="ActorRegistry"/>; <paramref name="progress"/> (optional) makes the actor that receives step
    /// reports and results. Send it <see cref="StartRun"/> to begin.
    /// </summary>
    public static AkkaConfigurationBuilder WithRunCoordinator(this AkkaConfigurationBuilder builder, RunConfig config, string runId,
        string runDirectory, Func<ActorSystem, IActorRef>? progress = null, RunStartOptions? options = null) =>
        builder.WithMetaMaeDispatchers().WithActors((system, registry) =>
        {
            var listener = progress?.Invoke(system);
            var coordinator = system.ActorOf(RunCoordinatorActor.Props(config, runId, runDirectory, listener, options), "run-coordinator");
            registry.Register<RunCoordinatorActor>(coordinator);
        });
}
