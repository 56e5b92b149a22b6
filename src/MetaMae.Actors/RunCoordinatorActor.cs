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

/// <summary>
/// Owns one run: its directory and durable record, the data stream, the learner (restarted from the latest valid
/// checkpoint when it fails) and the evaluators. Replies <see cref="RunFinished"/> to whoever sent
/// <see cref="Start"/> once the learner is done and every expected evaluation has reported; step reports go to the
/// optional progress listener.
/// </summary>
public sealed class RunCoordinatorActor : ReceiveActor
{
    /// <summary>Starts the run; the sender receives <see cref="RunFinished"/>.</summary>
    public sealed record Start
    {
        public static readonly Start Instance = new();
    }

    private readonly RunConfig config;
    private readonly string runId;
    private readonly string runDirectory;
    private readonly IActorRef? progress;
    private readonly LearnerActor.FaultInjector? fault;
    private readonly ILoggingAdapter log = Context.GetLogger();
    private readonly List<IActorRef> waiting = [];
    private readonly List<EvaluationResult> results = [];
    private readonly HashSet<(long Step, string Dataset)> pending = [];
    private readonly List<IActorRef> evaluators = [];
    private readonly DataMetrics dataMetrics = new();
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
    private string status = "running";
    private string? error;

    public RunCoordinatorActor(RunConfig config, string runId, string runDirectory, IActorRef? progress, LearnerActor.FaultInjector? fault)
    {
        this.config = config;
        this.runId = runId;
        this.runDirectory = runDirectory;
        this.progress = progress;
        this.fault = fault;

        Receive<Start>(_ =>
        {
            waiting.Add(Sender);
            if (learner is not null) return;
            try
            {
                Begin();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or FormatException
                                          or DataLayoutException or InvalidOperationException)
            {
                // A missing data directory or an unusable config: fail the run with the reason rather than restart.
                Fail(e.Message);
            }
        });
        Receive<LearnerReady>(r => r.RunId == runId, StartStream);
        Receive<StepReport>(r =>
        {
            step = r.Step;
            artifacts!.Step(r);
            if (r.Step % 10 == 0 || r.Step == r.TotalSteps) store!.UpdateStep(runId, r.Step);
            if (r.Step % 50 == 0 || r.Step == r.TotalSteps) artifacts.Data(r.Step, dataMetrics.Snapshot());
            progress?.Tell(r);
        });
        Receive<CheckpointSaved>(c =>
        {
            store!.AddCheckpoint(runId, c.Step, c.Path, valid: true);
            progress?.Tell(c);
            if (ShouldEvaluate(c))
                foreach (var (evaluator, ds) in evaluators.Zip(config.Evaluation.Datasets))
                {
                    pending.Add((c.Step, ds.Name));
                    evaluator.Tell(c);
                }
            checkpoints!.Prune(BestStep());
        });
        Receive<EvaluationResult>(r =>
        {
            pending.Remove((r.Step, r.Dataset));
            results.RemoveAll(x => x.Step == r.Step && x.Dataset == r.Dataset);
            results.Add(r);
            store!.AddEvaluation(r);
            artifacts!.Evaluation(r);
            progress?.Tell(r);
            TryFinish();
        });
        Receive<EvaluationFailed>(f =>
        {
            pending.Remove((f.Step, f.Dataset));
            log.Warning("evaluation on {0} at step {1} failed: {2}", f.Dataset, f.Step, f.Reason);
            progress?.Tell(f);
            TryFinish();
        });
        Receive<LearnerFinished>(f =>
        {
            step = f.Step;
            learnerDone = true;
            StopStream();
            status = "completed";
            TryFinish();
        });
        Receive<StopRun>(s =>
        {
            log.Info("stopping run {0}: {1}", runId, s.Reason);
            StopStream();
            pending.Clear();
            status = "stopped";
            if (learner is not null && !learnerDone) learner.Tell(LearnerActor.SaveAndStop.Instance);
            else Finish();
        });
        Receive<LearnerActor.Stopped>(s =>
        {
            step = s.Step;
            learnerDone = true;
            Finish();
        });
        Receive<LearnerActor.DataFailed>(f => Fail($"data stream failed: {f.Reason}"));
        Receive<Terminated>(t => t.ActorRef.Equals(learner) && !learnerDone, _ =>
            Fail(error ?? $"learner stopped after {restarts} restart(s)"));
        Receive<Terminated>(_ => { });
    }

    public static Props Props(RunConfig config, string runId, string runDirectory, IActorRef? progress = null,
        LearnerActor.FaultInjector? fault = null) =>
        Akka.Actor.Props.Create(() => new RunCoordinatorActor(config, runId, runDirectory, progress, fault));

    /// <summary>
    /// Restart the learner (it reloads the latest valid checkpoint) on any failure, up to max_learner_restarts in a row;
    /// a non-finite loss or a broken configuration would only repeat, so those stop it.
    /// </summary>
    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(config.MaxLearnerRestarts, TimeSpan.FromHours(24), e =>
    {
        error = e.Message;
        if (e is Model.Training.NonFiniteLossException or ConfigException or ActorInitializationException { InnerException: ConfigException })
            return Directive.Stop;
        restarts++;
        log.Warning("learner failed ({0}); restart {1} of at most {2} from the latest valid checkpoint", e.Message, restarts, config.MaxLearnerRestarts);
        StopStream();
        return Directive.Restart;
    });

    private void Begin()
    {
        Directory.CreateDirectory(runDirectory);
        File.WriteAllText(Path.Combine(runDirectory, "config.json"), config.ToJson());
        store = new RunStore(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(runDirectory))!, "runs.db"));
        store.StartRun(runId, config.Name, config.Steps, Path.GetFullPath(runDirectory), config.ToJson());
        artifacts = new RunArtifacts(runDirectory);
        checkpoints = new CheckpointStore(runDirectory, config.KeepCheckpoints, w => log.Warning(w));
        foreach (var r in store.Evaluations(runId)) results.Add(r); // a resumed run keeps what was measured before
        dataset = DatasetCatalog.Open(config.Dataset.Name, new ReaderOptions(EmbeddedData.Resolve(config.Dataset.Root), Split.Pretrain, config.Seed));
        var modelConfig = config.ToModelConfig();
        foreach (var (ds, i) in config.Evaluation.Datasets.Select((d, i) => (d, i)))
            evaluators.Add(Context.ActorOf(EvaluatorActor.Props(runId, ds, config.Evaluation, modelConfig), $"evaluator-{i}-{ds.Name}"));
        learner = Context.ActorOf(LearnerActor.Props(config, runId, runDirectory, fault), "learner");
        Context.Watch(learner);
    }

    private bool ShouldEvaluate(CheckpointSaved c) =>
        evaluators.Count > 0 && !results.Any(r => r.Step == c.Step) && status == "running"
        && (config.Evaluation.When == "every" || c.Final || (c.Step == 0 && config.Evaluation.IncludeRandomInit));

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
        int gen = ++generation;
        var settings = new PipelineSettings
        {
            BatchSize = config.EffectiveBatchSize, Seed = config.Seed, Parallelism = config.DataParallelism, MaxBadFraction = config.MaxBadFraction,
        };
        var learnerRef = learner!;
        stream = DataFlows.Batches(dataset!, settings, ready.Position, dataMetrics, m => log.Warning(m))
            .ViaMaterialized(KillSwitches.Single<Batch>(), Keep.Right)
            .To(LearnerActor.FeedSink(learnerRef, gen))
            .Run(Context.Materializer());
        log.Info("data stream {0} starts at {1} for learner step {2}", gen, ready.Position, ready.Step);
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
        if (status is "failed") return;
        status = "failed";
        error = reason;
        log.Error("run {0} failed: {1}", runId, reason);
        StopStream();
        Finish();
    }

    private void Finish()
    {
        var ordered = results.OrderBy(r => r.Dataset).ThenBy(r => r.Step).ToList();
        try
        {
            artifacts?.Plots(ordered);
            artifacts?.Report(runId, status, step, config.ToJson(), ordered, error);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or ArgumentException)
        {
            log.Warning("could not write plots or report: {0}", e.Message);
        }
        store?.FinishRun(runId, status, step, error);
        var finished = new RunFinished(runId, status, step, Path.GetFullPath(runDirectory), ordered, error);
        foreach (var w in waiting) w.Tell(finished);
        progress?.Tell(finished);
        Context.Stop(Self);
    }

    protected override void PostStop()
    {
        StopStream();
        artifacts?.Dispose();
        store?.Dispose();
    }
}

/// <summary>Akka.Hosting wiring: the pipeline's dispatchers and one run's coordinator, registered for lookup.</summary>
public static class RunCoordinatorHosting
{
    /// <summary>Adds the HOCON Akka.Hosting has no API for (the learner's and evaluators' pinned dispatchers).</summary>
    public static AkkaConfigurationBuilder WithMetaMaeDispatchers(this AkkaConfigurationBuilder builder) =>
        builder.AddHocon(MetaMaeHocon.Config, HoconAddMode.Prepend);

    /// <summary>
    /// Starts a <see cref="RunCoordinatorActor"/> named "run-coordinator" for <paramref name="config"/> and registers it
    /// in the <see cref="ActorRegistry"/>; <paramref name="progress"/> (optional) makes the actor that receives step
    /// reports and results. Send it <see cref="RunCoordinatorActor.Start"/> to begin.
    /// </summary>
    public static AkkaConfigurationBuilder WithRunCoordinator(this AkkaConfigurationBuilder builder, RunConfig config, string runId,
        string runDirectory, Func<ActorSystem, IActorRef>? progress = null) =>
        builder.WithMetaMaeDispatchers().WithActors((system, registry) =>
        {
            var listener = progress?.Invoke(system);
            var coordinator = system.ActorOf(RunCoordinatorActor.Props(config, runId, runDirectory, listener), "run-coordinator");
            registry.Register<RunCoordinatorActor>(coordinator);
        });
}
