using Akka.Actor;
using Akka.Event;
using Akka.Hosting;
using MetaMae.Actors.Reporting;
using MetaMae.Actors.Runs;
using MetaMae.Protocol;

namespace MetaMae.Actors.Coordination;

/// <summary>The hosts a run may use, by role; a cluster's run manager keeps them current with <see cref="HostsChanged"/>.</summary>
internal sealed record RunHosts(IReadOnlyList<IActorRef> Learners, IReadOnlyList<IActorRef> Data, IReadOnlyList<IActorRef> Evaluators)
{
    public static readonly RunHosts None = new([], [], []);
}

/// <summary>The set of hosts changed (a node joined or left).</summary>
internal sealed record HostsChanged(RunHosts Hosts);

/// <summary>How a run starts: the directory lock, corrupt or orphaned checkpoints, and the coordination's time bounds.</summary>
public sealed record RunStartOptions
{
    /// <summary>The run directory's lock, taken by the caller (the command takes it before printing anything).</summary>
    public RunDirectoryLock? Lock { get; init; }
    /// <summary>The token of a lock this process already holds for the directory (handed over through a message).</summary>
    public string? LockToken { get; init; }
    /// <summary>When every checkpoint of the directory is corrupt: move them aside and start over instead of failing.</summary>
    public bool FromScratch { get; init; }
    /// <summary>
    /// This coordinator takes over a run whose coordinator is gone (the singleton moved): checkpoints newer than the
    /// newest the record holds were written by learners after their coordinator died, with no step recorded; they are
    /// moved to RUN/orphaned-checkpoints/ so the run resumes where its metrics and record continue without a gap.
    /// </summary>
    public bool TakeOver { get; init; }
    /// <summary>The coordination's time bounds; null: <see cref="CoordinatorSettings.For"/> the run's config.</summary>
    public CoordinatorSettings? Settings { get; init; }

    public static readonly RunStartOptions Default = new();
}

/// <summary>
/// Owns one run: its directory (locked for this process), and three children that each own one job: the
/// <see cref="LearnerGroupActor"/> (placement, formation, feeds, digests, re-forms), the
/// <see cref="ProbeCoordinatorActor"/> (probes owed, handed to evaluator hosts, retried) and the
/// <see cref="RunRecorderActor"/> (record, files, checkpoint pruning, metrics). The run is a state machine:
/// <c>Idle</c> until <see cref="StartRun"/>, <c>Starting</c> while the record opens, <c>Training</c>, <c>Draining</c>
/// (training over, probes owed) and <c>Finishing</c> (the report and record written); then every waiter hears
/// <see cref="RunFinished"/> once, and the coordinator stops. Step reports go to the optional progress listener.
/// <para>
/// Whatever fails, the run ends: an exception in any part (opening the record, writing metrics, pruning), a data host's
/// failure, a learner host giving up, or a probe that fails ends the run with the stage and cause in
/// <see cref="RunFinished.Error"/>, in the record and in report.md. It is never restarted (a restarted coordinator
/// would forget who waits). A host that dies is replaced: the learner resumes elsewhere from the latest checkpoint, the
/// feed restarts from the learner's position, probes go to another evaluator.
/// </para>
/// </summary>
internal sealed class RunCoordinatorActor : RunPartActor
{
    private readonly RunSpec config;
    private readonly string configJson;
    private readonly string runId;
    private readonly string runDirectory;
    private readonly IActorRef? progress;
    private readonly RunStartOptions options;
    private readonly CoordinatorSettings settings;
    private readonly ILoggingAdapter log = Context.GetLogger();
    private readonly List<IActorRef> waiting = [];
    private readonly List<EvaluationResult> results = [];
    private readonly List<EvaluationFailed> failedProbes = [];
    private RunHosts hosts;
    private RunDirectoryLock? directoryLock;
    private bool ownsLock;
    private IActorRef? recorder;
    private IActorRef? group;
    private IActorRef? probes;
    private long step;
    private RunStatus status = RunStatus.Running;
    private string? error;
    private RunFinished? ending;

    public RunCoordinatorActor(RunSpec config, string runId, string runDirectory, RunHosts hosts, IActorRef? progress, RunStartOptions? options)
    {
        this.config = config;
        configJson = config.ToJson();
        this.runId = runId;
        this.runDirectory = runDirectory;
        this.hosts = hosts;
        this.progress = progress;
        this.options = options ?? RunStartOptions.Default;
        settings = this.options.Settings ?? CoordinatorSettings.For(config);
        Become(Idle);
    }

    /// <param name="hosts">The learner, data and evaluator hosts the run may use (a cluster's run manager keeps them current).</param>
    public static Props Props(RunSpec config, string runId, string runDirectory, RunHosts hosts, IActorRef? progress = null, RunStartOptions? options = null) =>
        Akka.Actor.Props.Create(() => new RunCoordinatorActor(config, runId, runDirectory, hosts, progress, options));

    private void Idle()
    {
        Receive<StartRun>(_ =>
        {
            AddWaiter(Sender);
            Begin();
        });
        Receive<HostsChanged>(h => hosts = h.Hosts);
    }

    private void Starting()
    {
        Receive<RecordOpened>(o =>
        {
            foreach (var w in o.Warnings) Warn(w);
            results.AddRange(o.Results);
            probes = Context.ActorOf(ProbeCoordinatorActor.Props(config, runId, recorder!, hosts.Evaluators, o.Results, settings), "probes");
            group = Context.ActorOf(LearnerGroupActor.Props(config, runId, runDirectory, hosts, settings), "learner-group");
            group.Tell(new StartTraining());
            if (status == RunStatus.Stopped) group.Tell(new StopTraining()); // asked while the record opened: the learner stops once it is ready
            // Probes a kill interrupted (or that failed before) are redone on the checkpoints still on disk.
            foreach (var (s, path) in o.ValidCheckpoints.OrderBy(c => c.Step))
                if (ShouldEvaluate(s, final: s >= config.Steps)) probes.Tell(new CheckpointTaken(new CheckpointSaved(runId, s, path, s >= config.Steps), true));
            Become(Training);
        });
        Receive<StopRun>(s =>
        {
            // As a stop that comes later: the learner is placed and writes its final checkpoint (the caller bounds the wait).
            if (status != RunStatus.Running) return;
            log.Info("stopping run {0}: {1}", runId, s.Reason);
            status = RunStatus.Stopped;
        });
        Receive<HostsChanged>(h => hosts = h.Hosts);
        Common();
    }

    private void Training()
    {
        Receive<StepReport>(r =>
        {
            step = r.Step;
            recorder!.Tell(r);
            progress?.Tell(r);
        });
        Receive<DataReport>(d => recorder!.Tell(d));
        Receive<CheckpointSaved>(c =>
        {
            recorder!.Tell(c);
            progress?.Tell(c);
            probes!.Tell(new CheckpointTaken(c, ShouldEvaluate(c.Step, c.Final)));
        });
        Receive<LearnerFinished>(f =>
        {
            step = f.Step;
            if (status == RunStatus.Running) status = RunStatus.Completed;
            probes!.Tell(new TrainingEnded());
            Become(Draining);
        });
        Receive<LearnerStopped>(s =>
        {
            step = s.Step;
            Finish();
        });
        Receive<StopRun>(s => Stop(s.Reason));
        Receive<HostsChanged>(h =>
        {
            hosts = h.Hosts;
            group!.Tell(h);
            probes!.Tell(h);
        });
        Recording();
        Common();
    }

    private void Draining()
    {
        Receive<ProbesSettled>(_ => Finish());
        Receive<StopRun>(s =>
        {
            if (status == RunStatus.Stopped) return;
            log.Info("stopping run {0}: {1}", runId, s.Reason);
            status = RunStatus.Stopped;
            probes!.Tell(new AbandonProbes()); // it says which probes are left to `resume`, then that the probes settled
        });
        Receive<HostsChanged>(h =>
        {
            hosts = h.Hosts;
            probes!.Tell(h);
        });
        Receive<DataReport>(d => recorder!.Tell(d));
        Recording();
        Common();
    }

    private void Finishing()
    {
        Receive<RecordClosed>(c => Complete(c.Problems));
        Receive<Terminated>(t => t.ActorRef.Equals(recorder), _ => Complete(["the recorder stopped before the report and record were written"]));
        Receive<StartRun>(_ => AddWaiter(Sender));
        ReceiveAny(_ => { }); // the run is ending: late reports are of no use
    }

    /// <summary>What the probes and the group report while the run trains or drains.</summary>
    private void Recording()
    {
        Receive<GroupFormedAt>(g => recorder!.Tell(g));
        Receive<ReplicasAgreeAt>(a => recorder!.Tell(a));
        Receive<EvaluationResult>(r =>
        {
            results.RemoveAll(x => x.Step == r.Step && x.Dataset == r.Dataset);
            failedProbes.RemoveAll(f => f.Step == r.Step && f.Dataset == r.Dataset);
            results.Add(r);
            recorder!.Tell(r);
            progress?.Tell(r);
        });
        Receive<EvaluationFailed>(f =>
        {
            failedProbes.RemoveAll(x => x.Step == f.Step && x.Dataset == f.Dataset);
            failedProbes.Add(f);
            log.Warning("evaluation on {0} at step {1} failed: {2}", f.Dataset, f.Step, f.Reason);
            progress?.Tell(f);
        });
    }

    /// <summary>What every state before the end handles: more waiters, warnings, and a part that fails the run.</summary>
    private void Common()
    {
        Receive<StartRun>(_ => AddWaiter(Sender));
        Receive<PartWarning>(w => Warn(w.Message));
        Receive<RunPartFailed>(f => Fail(f.Reason));
        Receive<Terminated>(t => t.ActorRef.Equals(recorder), _ => Fail("the run's recorder stopped"));
    }


    /// <summary>A child that fails to start fails the run (the children catch their own handlers' errors and say so).</summary>
    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(e =>
    {
        var cause = e is ActorInitializationException { InnerException: { } inner } ? inner : e;
        Self.Tell(new RunPartFailed($"the run's coordination failed: {Failures.Describe(cause)}"));
        return Directive.Stop;
    });

    private void AddWaiter(IActorRef waiter)
    {
        if (!waiter.IsNobody() && !waiting.Contains(waiter)) waiting.Add(waiter);
    }

    private void Begin()
    {
        Stage = $"locking run directory {runDirectory}";
        Become(Starting); // from here on a failure ends the run through Finish
        directoryLock = options.Lock ?? (options.LockToken is { } token ? RunDirectoryLock.Adopt(token, runDirectory) : null);
        if (directoryLock is null)
        {
            directoryLock = RunDirectoryLock.Acquire(runDirectory);
            ownsLock = true;
        }
        if (directoryLock.Previous is { } dead)
            log.Warning("run directory {0} was held by {1}, which is no longer running; taking it over", runDirectory, dead);
        // From here on the directory is ours: a failure may write its report and record.
        Stage = "writing config.json";
        File.WriteAllText(Path.Combine(runDirectory, "config.json"), configJson);
        Stage = "running";
        recorder = Context.ActorOf(RunRecorderActor.Props(config, configJson, runId, runDirectory, options, settings), "recorder");
        Context.Watch(recorder);
        recorder.Tell(new OpenRecord());
    }

    /// <summary>The step-0 (random) encoder only when include_random_init says so, whatever "when" says; others by "when".</summary>
    private bool ShouldEvaluate(long checkpointStep, bool final) =>
        config.Evaluation.Datasets.Count > 0 && status == RunStatus.Running
        && (checkpointStep == 0 ? config.Evaluation.IncludeRandomInit : config.Evaluation.When == ProbeWhen.Every || final);

    /// <summary>A stop on request: rank 0 writes a final checkpoint (the group answers <see cref="LearnerStopped"/>); probes in flight are left to `resume`.</summary>
    private void Stop(string reason)
    {
        if (status != RunStatus.Running) return;
        log.Info("stopping run {0}: {1}", runId, reason);
        status = RunStatus.Stopped;
        probes?.Tell(new AbandonProbes());
        if (group is null) Finish();
        else group.Tell(new StopTraining());
    }

    /// <summary>A warning the user hears of: in the record, on the run's progress topic.</summary>
    private void Warn(string message)
    {
        recorder?.Tell(new RecordWarning(step, message));
        progress?.Tell(new RunWarning(runId, step, message));
    }

    protected override void Fail(string reason)
    {
        if (ending is not null || status == RunStatus.Failed) return;
        status = RunStatus.Failed;
        error = reason;
        log.Error("run {0} failed: {1}", runId, reason);
        Finish();
    }

    /// <summary>
    /// Ends the run whatever else fails: the group is dissolved (its hosts let go of the run), probes owed are
    /// abandoned, and the recorder writes plots and report.md (bounded) and finishes the record as far as it can (a
    /// failure there is added to the error); then <see cref="Complete"/>.
    /// </summary>
    private void Finish()
    {
        if (ending is not null) return;
        if (status == RunStatus.Completed && failedProbes.Count > 0)
        {
            status = RunStatus.Failed;
            error = $"pretraining completed at step {step}, but {failedProbes.Count} probe(s) failed: " +
                    string.Join("; ", failedProbes.OrderBy(f => f.Step).Take(5).Select(f => $"step {f.Step} on {f.Dataset}: {f.Reason}")) +
                    (failedProbes.Count > 5 ? "; ..." : "") + ". `metamae resume` redoes them";
        }
        var ordered = results.OrderBy(r => r.Dataset).ThenBy(r => r.Step).ToList();
        ending = new RunFinished(runId, status, step, Path.GetFullPath(runDirectory), ordered, error);
        probes?.Tell(new AbandonProbes());
        group?.Tell(new EndGroup());
        Become(Finishing);
        if (recorder is null) Complete([]);
        else recorder.Tell(new CloseRecord(status, step, error, ordered, failedProbes.ToList()));
    }

    /// <summary>
    /// The hosts let go of the run and the directory is released before anyone hears the run ended; every waiter, and
    /// the progress listener if it is not one, hears it once; then the coordinator stops.
    /// </summary>
    private void Complete(IReadOnlyList<string> problems)
    {
        var message = problems.Count == 0 ? error : string.Join("; ", new[] { error }.Concat(problems).Where(m => m is not null));
        var result = ending! with { Error = message };
        foreach (var h in hosts.Learners.Concat(hosts.Data).Concat(hosts.Evaluators)) h.Tell(new RunEnded(runId));
        Release();
        foreach (var w in waiting) w.Tell(result);
        if (progress is not null && !waiting.Contains(progress)) progress.Tell(result);
        Context.Stop(Self);
    }

    protected override void PostStop() => Release();

    /// <summary>Frees the directory; never throws.</summary>
    private void Release()
    {
        if (!ownsLock) return;
        ownsLock = false;
        try
        {
            directoryLock?.Dispose();
        }
        catch (Exception e)
        {
            log.Warning("while releasing the run directory: {0}", e.Message);
        }
    }
}

/// <summary>Akka.Hosting wiring shared by every node: the pipeline's dispatchers and the message serializer.</summary>
internal static class RunCoordinatorHosting
{
    /// <summary>
    /// The pipeline's dispatchers (HOCON: Akka.Hosting has no API for them) and the serializer of every
    /// <see cref="IMetaMaeMessage"/>, bound through the marker interface.
    /// </summary>
    public static AkkaConfigurationBuilder WithMetaMaeDispatchers(this AkkaConfigurationBuilder builder) =>
        builder.AddHocon(MetaMaeHocon.Dispatchers, HoconAddMode.Prepend)
            .WithCustomSerializer("metamae", [typeof(IMetaMaeMessage)], system => new MetaMaeSerializer(system));
}
