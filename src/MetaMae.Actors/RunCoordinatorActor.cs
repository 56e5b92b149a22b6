using Akka.Actor;
using Akka.Event;
using Akka.Hosting;
using MetaMae.Actors.Checkpoints;
using MetaMae.Actors.Reporting;
using MetaMae.Actors.Runs;
using MetaMae.Protocol;

namespace MetaMae.Actors;

/// <summary>The hosts a run may use, by role; a cluster's run manager keeps them current with <see cref="HostsChanged"/>.</summary>
public sealed record RunHosts(IReadOnlyList<IActorRef> Learners, IReadOnlyList<IActorRef> Data, IReadOnlyList<IActorRef> Evaluators)
{
    public static readonly RunHosts None = new([], [], []);
}

/// <summary>The set of hosts changed (a node joined or left).</summary>
public sealed record HostsChanged(RunHosts Hosts);

/// <summary>How a run starts: the directory lock, corrupt checkpoints, and where its learner, data and probes run.</summary>
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
    /// <summary>
    /// Learner, data and evaluator hosts (a cluster's, kept current by the run manager). Null: the coordinator starts
    /// one of each as its own children, the same actors on one node.
    /// </summary>
    public RunHosts? Hosts { get; init; }

    public static readonly RunStartOptions Default = new();
}

/// <summary>
/// Owns one run: its directory (locked for this process) and durable record; it places the learner on a learner host,
/// asks the data hosts for the learner's feed (one shard each) and the evaluator hosts for probes, and records what
/// they report. Replies <see cref="RunFinished"/> to whoever sent <see cref="StartRun"/> once the learner is done and
/// every expected evaluation has reported (or timed out); step reports go to the optional progress listener.
/// <para>
/// Whatever fails, the run ends: an exception in any handler (opening the record, writing metrics, pruning), a data
/// host's failure, a learner host giving up, or a probe that fails ends the run with the stage and cause in
/// <see cref="RunFinished.Error"/>, in the record and in report.md, and the coordinator stops. It is never restarted
/// (a restarted coordinator would forget who waits). A host that dies is replaced: the learner resumes elsewhere from
/// the latest checkpoint, the feed restarts from the learner's position, probes go to another evaluator.
/// </para>
/// </summary>
public sealed class RunCoordinatorActor : ReceiveActor, IWithTimers
{
    private sealed record Refeed(int Generation);
    private sealed record LearnerLost(IActorRef Learner);
    private sealed record PlacementDeadline(string Role);
    private sealed record LeavingDeadline(int Group);
    private sealed record FinalDigestsLate;
    private sealed record LearnersAwaited;

    /// <summary>One replica of the learner group: where it runs, its learner once ready, and its current feed.</summary>
    private sealed class Replica(IActorRef host)
    {
        public IActorRef Host { get; } = host;
        public IActorRef? Learner { get; set; }
        /// <summary>Its learner's Terminated has arrived (death watch says so only once).</summary>
        public bool Gone { get; set; }
        public LearnerReady? Ready { get; set; }
        public int Generation { get; set; } = -1;
    }
    private sealed record ProbeDeadline;
    private sealed record RepublishProbes;

    private readonly RunSpec config;
    private readonly string configJson;
    private readonly string runId;
    private readonly string runDirectory;
    private readonly IActorRef? progress;
    private readonly RunStartOptions options;
    private readonly ILoggingAdapter log = Context.GetLogger();
    private readonly List<IActorRef> waiting = [];
    private readonly List<EvaluationResult> results = [];
    private readonly List<EvaluationFailed> failedProbes = [];
    /// <summary>Probes owed, each with the evaluator host that took it (null: not yet taken).</summary>
    private readonly Dictionary<(long Step, string Dataset), IActorRef?> pending = [];
    private readonly Dictionary<(long Step, string Dataset), CheckpointSaved> probeCheckpoints = [];
    private readonly Dictionary<string, DataReport> dataReports = [];
    private RunHosts hosts;
    private RunDirectoryLock? directoryLock;
    private bool ownsLock;
    private IRunRecord? store;
    private IActorRef? reporter;
    private bool finishing;
    private RunFinished? done;
    private CheckpointStore? checkpoints;
    /// <summary>The learner group by rank (one replica when replicas = 1); empty while none is placed.</summary>
    private readonly List<Replica> replicas = [];
    /// <summary>Learners of a dissolved group not yet stopped, with their hosts: the next group waits for them.</summary>
    private readonly Dictionary<IActorRef, IActorRef> leaving = [];
    /// <summary>The current (or next) group's number: raised as a group is dissolved, so nothing of the old one counts.</summary>
    private int group = 1;
    private bool formed;
    private bool growAtCheckpoint;
    private int regroups;
    private string groupReason = "run started";
    /// <summary>Each replica's parameter digest at a checkpoint step, until all of the group's are in.</summary>
    private readonly Dictionary<long, string?[]> digests = [];
    private bool finalDigestsLate;
    /// <summary>The wait for learner nodes that are members but not yet registered (after a move) is over.</summary>
    private bool learnersAwaited;
    private readonly HashSet<IActorRef> deadHosts = [];
    private int generation;
    private int refeeds;
    private int placements;
    private int nextEvaluator;
    private long step;
    /// <summary>The highest step reported in this coordinator's life (a lower or equal one is trained again).</summary>
    private long highestStep;
    private bool started;
    private bool learnerDone;
    private bool finished;
    private RunStatus status = RunStatus.Running;
    private string? error;
    /// <summary>What the coordinator is doing, named in the error when it fails there.</summary>
    private string stage = "starting";

    public ITimerScheduler Timers { get; set; } = null!;

    public RunCoordinatorActor(RunSpec config, string runId, string runDirectory, IActorRef? progress, RunStartOptions? options)
    {
        this.config = config;
        configJson = config.ToJson();
        this.runId = runId;
        this.runDirectory = runDirectory;
        this.progress = progress;
        this.options = options ?? RunStartOptions.Default;
        hosts = this.options.Hosts ?? RunHosts.None;

        Receive<StartRun>(_ =>
        {
            waiting.Add(Sender);
            if (!started && !finished) Begin();
        });
        Receive<HostsChanged>(h => UpdateHosts(h.Hosts));
        Receive<LearnerReady>(r => r.RunId == runId, OnLearnerReady);
        Receive<ReplicaLeft>(l => l.RunId == runId && l.Group == group, l => Regroup($"replica {l.Rank} left group {l.Group}: {l.Reason}"));
        Receive<ReplicaDigest>(d => d.RunId == runId && d.Group == group && d.Rank < replicas.Count, d =>
        {
            if (!digests.TryGetValue(d.Step, out var all)) digests[d.Step] = all = new string?[replicas.Count];
            all[d.Rank] = d.Digest;
            if (all.Any(x => x is null)) return;
            digests.Remove(d.Step);
            if (all.Distinct().Count() == 1)
            {
                reporter!.Tell(new ReplicasAgreeAt(d.Step, group, all.Length, all[0]!));
                TryFinish();
            }
            else Fail($"the {all.Length} replicas of learner group {group} diverged at step {d.Step} (parameter digests " +
                      string.Join(", ", all.Select((x, r) => $"{r}: {x![..12]}")) + "); their weights cannot be trusted");
        });
        Receive<StepReport>(r =>
        {
            step = r.Step;
            refeeds = 0;
            regroups = 0;
            reporter!.Tell(r);
            Cluster.RunMetrics.Record(r, retrained: r.Step <= highestStep);
            highestStep = Math.Max(highestStep, r.Step);
            stage = "recording the step in the run record";
            if (r.Step % 10 == 0 || r.Step == r.TotalSteps) store!.UpdateStep(runId, r.Step);
            stage = "writing data metrics";
            if (r.Step % 50 == 0 || r.Step == r.TotalSteps) WriteDataMetrics(r.Step);
            stage = "running";
            progress?.Tell(r);
        });
        Receive<DataReport>(d => d.RunId == runId, d =>
        {
            dataReports[d.Node] = d;
            Cluster.RunMetrics.BadRecords.WithLabels(runId).Set(dataReports.Values.Sum(x => x.BadRecords));
        });
        Receive<CheckpointSaved>(c =>
        {
            stage = $"recording checkpoint {c.Path}";
            store!.AddCheckpoint(runId, c.Step, c.Path, valid: true);
            progress?.Tell(c);
            if (ShouldEvaluate(c.Step, c.Final)) Probe(c);
            Prune();
            if (growAtCheckpoint && !c.Final && status == RunStatus.Running && !learnerDone && LiveLearnerHosts().Count > replicas.Count)
            {
                growAtCheckpoint = false;
                Regroup($"a learner node joined: the group grows from the checkpoint of step {c.Step}", counts: false, growing: true);
            }
        });
        Receive<ProbeAccepted>(a =>
        {
            if (!pending.ContainsKey((a.Step, a.Dataset))) return;
            pending[(a.Step, a.Dataset)] = a.Host;
            Context.Watch(a.Host);
        });
        Receive<EvaluationResult>(r =>
        {
            if (!pending.Remove((r.Step, r.Dataset))) return; // abandoned by a stop, or answered twice
            results.RemoveAll(x => x.Step == r.Step && x.Dataset == r.Dataset);
            results.Add(r);
            stage = "recording an evaluation";
            store!.AddEvaluation(r);
            reporter!.Tell(r);
            Cluster.RunMetrics.Probe.WithLabels(runId, r.Dataset, r.Metric).Set(r.Value);
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
        Receive<RepublishProbes>(_ =>
        {
            var unclaimed = pending.Where(p => p.Value is null).Select(p => p.Key).ToList();
            if (unclaimed.Count == 0) Timers.Cancel("probes-unclaimed");
            foreach (var (s, d) in unclaimed) SendProbe(s, d);
        });
        Receive<ProbeDeadline>(_ =>
        {
            foreach (var (key, _) in pending.ToList())
                Self.Tell(new EvaluationFailed(runId, key.Step, key.Dataset,
                    $"no evaluator reported within probe_timeout_seconds ({config.ProbeTimeoutSeconds:0} s) after training ended"));
        });
        Receive<LearnerFinished>(f =>
        {
            step = f.Step;
            learnerDone = true;
            if (status == RunStatus.Running) status = RunStatus.Completed;
            if (pending.Count > 0) Timers.StartSingleTimer("probe-deadline", new ProbeDeadline(), TimeSpan.FromSeconds(config.ProbeTimeoutSeconds));
            TryFinish();
        });
        Receive<StopRun>(s =>
        {
            if (finished) return;
            log.Info("stopping run {0}: {1}", runId, s.Reason);
            pending.Clear(); // probes in flight are redone by `resume`
            status = RunStatus.Stopped;
            // Rank 0 writes the group's final checkpoint; a learner still starting is told when it reports ready.
            if (learnerDone || replicas.Count == 0) Finish();
            else replicas[0].Learner?.Tell(StopLearner.Instance);
        });
        Receive<LearnerStopped>(s =>
        {
            step = s.Step;
            learnerDone = true;
            Finish();
        });
        Receive<LearnerGaveUp>(g => g.RunId == runId, g =>
        {
            if (g.Group != group && g.Group != 0) return; // a replica of a dissolved group: its group is already being re-formed
            if (g.Retryable && replicas.Count > 1) Regroup($"a replica failed: {g.Reason}");
            else Fail(g.Reason);
        });
        Receive<PlacementDeadline>(d =>
        {
            if (finished || learnerDone) return;
            if (d.Role == Roles.Learner && replicas.Count == 0)
                Fail($"no learner node to train on within placement_timeout_seconds ({config.PlacementTimeoutSeconds:0} s): " +
                     $"{LiveLearnerHosts().Count} learner node(s) up, min_replicas is {config.MinReplicas}; start one with `metamae node --roles learner`");
            else if (d.Role == Roles.Data && LiveDataHosts().Count == 0)
                Fail($"no data node to read {config.Dataset.Name} within placement_timeout_seconds ({config.PlacementTimeoutSeconds:0} s); " +
                     "start one with `metamae node --roles data`");
        });
        Receive<FinalDigestsLate>(_ =>
        {
            log.Warning("run {0}: not every replica's parameter digest of step {1} arrived within 10 s; finishing without it", runId, step);
            finalDigestsLate = true;
            TryFinish();
        });
        Receive<LearnersAwaited>(_ =>
        {
            learnersAwaited = true;
            PlaceGroupIfNone();
        });
        Receive<LeavingDeadline>(d =>
        {
            if (d.Group == group && leaving.Count > 0 && !finished)
                Fail($"{leaving.Count} replica(s) of the dissolved learner group did not stop within 60 s; not starting a new group beside them");
        });
        Receive<ReporterFailed>(f => Fail(f.Reason));
        Receive<FinalReportWritten>(w => Complete(w.Problems));
        Receive<ReceiveTimeout>(_ => Complete(["could not write the plots and report.md within 60 s"]));
        Receive<DataStreamFailed>(f => f.RunId == runId, f => Fail($"data stream failed: {f.Reason}"));
        Receive<FeedInterrupted>(f => f.RunId == runId && replicas.Any(m => m.Generation == f.Generation), f =>
        {
            // A data node left or the transport broke: the data hosts say so themselves if the data is at fault;
            // otherwise the feed is opened again from where the learner stands, a bounded number of times in a row.
            if (++refeeds > 10) Fail($"data stream keeps breaking off without progress: {f.Reason}");
            else Timers.StartSingleTimer($"refeed-{f.Generation}", new Refeed(f.Generation), TimeSpan.FromSeconds(1));
        });
        Receive<Refeed>(r =>
        {
            if (!learnerDone && status == RunStatus.Running)
                replicas.FirstOrDefault(m => m.Generation == r.Generation)?.Learner?.Tell(new ReportPosition(runId));
        });
        Receive<Terminated>(t => leaving.ContainsKey(t.ActorRef), t =>
        {
            leaving.Remove(t.ActorRef);
            PlaceGroupIfNone();
        });
        Receive<Terminated>(t => replicas.Any(m => t.ActorRef.Equals(m.Learner)), t =>
        {
            foreach (var m in replicas.Where(m => t.ActorRef.Equals(m.Learner))) m.Gone = true;
            if (!learnerDone) Timers.StartSingleTimer($"learner-lost-{t.ActorRef.Path}", new LearnerLost(t.ActorRef), TimeSpan.FromSeconds(1));
        });
        Receive<LearnerLost>(l =>
        {
            // No word from its host (which reports a learner it gave up on): the learner's node is gone.
            var lost = replicas.FindIndex(m => l.Learner.Equals(m.Learner));
            if (finished || learnerDone || lost < 0) return;
            Regroup(replicas.Count == 1 ? "the learner is gone with its node" : $"replica {lost}'s learner is gone with its node", counts: false);
        });
        Receive<Terminated>(t => HostGone(t.ActorRef));
    }

    public static Props Props(RunSpec config, string runId, string runDirectory, IActorRef? progress = null, RunStartOptions? options = null) =>
        Akka.Actor.Props.Create(() => new RunCoordinatorActor(config, runId, runDirectory, progress, options));

    /// <summary>Any exception in a handler ends the run, failed, with the stage it happened in.</summary>
    protected override bool AroundReceive(Receive receive, object message)
    {
        if (finished) return true; // the run has ended: late reports are of no use
        if (finishing && message is not (FinalReportWritten or ReceiveTimeout)) return true;
        try
        {
            return base.AroundReceive(receive, message);
        }
        catch (Exception e)
        {
            Fail($"{stage} failed: {Failures.Describe(e)}");
            return true;
        }
    }

    private void Begin()
    {
        started = true;
        stage = $"locking run directory {runDirectory}";
        directoryLock = options.Lock ?? (options.LockToken is { } token ? RunDirectoryLock.Adopt(token, runDirectory) : null);
        if (directoryLock is null)
        {
            directoryLock = RunDirectoryLock.Acquire(runDirectory);
            ownsLock = true;
        }
        if (directoryLock.Previous is { } dead)
            log.Warning("run directory {0} was held by {1}, which is no longer running; taking it over", runDirectory, dead);
        // From here on the directory is ours: a failure may write its report and record.
        stage = "writing config.json";
        File.WriteAllText(Path.Combine(runDirectory, "config.json"), configJson);
        stage = "opening metrics.jsonl and TensorBoard";
        reporter = Context.ActorOf(RunReporterActor.Props(runId, runDirectory), "reporter");
        var runs = RunRecord.RunsDirectoryOf(runDirectory);
        stage = $"opening the run record {RunRecord.Describe(runs)}";
        store = RunRecord.Open(runs);
        store.StartRun(runId, config.Name, config.Steps, Path.GetFullPath(runDirectory), configJson);
        Cluster.RunMetrics.Started(runId);
        highestStep = store.Runs().FirstOrDefault(r => r.Id == runId)?.Step ?? 0; // recorded every 10 steps: a resume retrains from below it

        stage = "checking checkpoints";
        checkpoints = new CheckpointStore(runDirectory, config.KeepCheckpoints, w => log.Warning(w));
        foreach (var action in checkpoints.CleanLeftovers()) log.Warning("{0}", action);
        if (options.TakeOver && store.Checkpoints(runId).Select(c => (long?)c.Step).Max() is { } newestRecorded)
        {
            var moved = checkpoints.MoveAsideAfter(newestRecorded, "orphaned-checkpoints");
            if (moved > 0)
                Warn($"moved {moved} checkpoint(s) after step {newestRecorded} to orphaned-checkpoints/: written after the previous coordinator was gone, " +
                     $"with no step recorded; the run resumes from step {newestRecorded}");
        }
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

        stage = "placing the learner";
        if (options.Hosts is null)
        {
            // One node, no cluster: the same hosts, as children.
            hosts = new RunHosts(
                [Context.ActorOf(Akka.Actor.Props.Create<LearnerHostActor>(), LearnerHostActor.Name)],
                [Context.ActorOf(Akka.Actor.Props.Create<DataHostActor>(), DataHostActor.Name)],
                config.Evaluation.Datasets.Count > 0 ? [Context.ActorOf(Akka.Actor.Props.Create<EvaluatorHostActor>(), EvaluatorHostActor.Name)] : []);
        }
        foreach (var h in hosts.Learners.Concat(hosts.Data).Concat(hosts.Evaluators)) Context.Watch(h);
        PlaceGroup();
        // Probes a kill interrupted (or that failed before) are redone on the checkpoints still on disk.
        foreach (var (s, path) in valid.OrderBy(c => c.Step))
            if (ShouldEvaluate(s, final: s >= config.Steps)) Probe(new CheckpointSaved(runId, s, path, s >= config.Steps));
        stage = "running";
    }

    /// <summary>The cluster's members with the learner role that are Up and reachable from here.</summary>
    private static int ReachableLearnerMembers()
    {
        var state = Akka.Cluster.Cluster.Get(Context.System).State;
        return state.Members.Count(m => m.Status == Akka.Cluster.MemberStatus.Up && m.HasRole(Roles.Learner) && !state.Unreachable.Contains(m));
    }

    private List<IActorRef> LiveLearnerHosts() => hosts.Learners.Where(h => !deadHosts.Contains(h)).ToList();
    private List<IActorRef> LiveDataHosts() => hosts.Data.Where(h => !deadHosts.Contains(h)).ToList();

    /// <summary>
    /// Forms a learner group of min(replicas, learner nodes) replicas, one per learner node (taken in turn, so a lost
    /// learner's replacement tends to go elsewhere); each resumes from the latest valid checkpoint. With fewer than
    /// min_replicas learner nodes it waits for them to join, at most placement_timeout_seconds.
    /// </summary>
    private void PlaceGroup()
    {
        var live = LiveLearnerHosts();
        if (live.Count < config.MinReplicas)
        {
            log.Warning("run {0}: {1} learner node(s), {2} needed; the learner starts when enough join", runId, live.Count, config.MinReplicas);
            if (!Timers.IsTimerActive("placement-learner"))
                Timers.StartSingleTimer("placement-learner", new PlacementDeadline(Roles.Learner), TimeSpan.FromSeconds(config.PlacementTimeoutSeconds));
            return;
        }
        Timers.Cancel("placement-learner");
        // Right after the coordinator moved, learner nodes that are reachable members may not have registered with the
        // new run manager yet: the group waits for them (a few seconds at most) rather than forming with fewer.
        int members = options.Hosts is null ? live.Count : ReachableLearnerMembers();
        if (live.Count < Math.Min(config.Replicas, members) && !learnersAwaited)
        {
            if (!Timers.IsTimerActive("await-learners"))
            {
                log.Info("run {0}: {1} of {2} learner node(s) registered; the group forms when the others have (at most 10 s)", runId, live.Count, members);
                Timers.StartSingleTimer("await-learners", new LearnersAwaited(), TimeSpan.FromSeconds(10));
            }
            return;
        }
        Timers.Cancel("await-learners");
        learnersAwaited = false;
        int size = Math.Min(config.Replicas, live.Count), first = placements++;
        formed = false;
        growAtCheckpoint = false;
        for (int rank = 0; rank < size; rank++)
        {
            var host = live[(first + rank) % live.Count];
            replicas.Add(new Replica(host));
            host.Tell(new StartLearner(runId, Path.GetFullPath(runDirectory), config, Self, rank, size, group));
        }
        if (size > 1 || config.Replicas > 1)
            log.Info("run {0}: learner group {1} of {2} replica(s) ({3} wanted), global batch {4}", [runId, group, size, config.Replicas, config.GlobalBatchSize(size)]);
    }

    /// <summary>
    /// Places a group when the run trains and has none, placed or stopping (a dissolved group's replicas are waited for);
    /// true when it did (or tried to: too few learner nodes waits with a deadline).
    /// </summary>
    private bool PlaceGroupIfNone()
    {
        if (!started || finished || learnerDone || status != RunStatus.Running || replicas.Count > 0 || leaving.Count > 0) return false;
        PlaceGroup();
        return true;
    }

    /// <summary>
    /// Ends the current group (its replicas wake from any collective and stop) and forms the next one from the latest
    /// valid checkpoint once they have stopped, with the learner nodes there are then. Bounded: after
    /// max(3, max_learner_restarts) re-forms without a step in between, the run fails.
    /// </summary>
    private void Regroup(string reason, bool counts = true, bool growing = false)
    {
        if (finished || finishing || learnerDone) return;
        if (counts && ++regroups > Math.Max(3, config.MaxLearnerRestarts))
        {
            Fail($"the learner group keeps breaking up without progress ({regroups - 1} re-forms without a step): {reason}");
            return;
        }
        log.Warning("run {0}: re-forming the learner group from the latest checkpoint: {1}", runId, reason);
        if (!growing) Warn($"the learner group re-forms from the latest checkpoint: {reason}");
        groupReason = reason;
        foreach (var m in replicas)
        {
            m.Ready?.Endpoint?.Tell(new DissolveGroup(runId, group, reason));
            if (!deadHosts.Contains(m.Host)) m.Host.Tell(new RunEnded(runId)); // stops that host's learner of this run
            if (m.Learner is not null && !m.Gone && !deadHosts.Contains(m.Host)) leaving[m.Learner] = m.Host;
        }
        replicas.Clear();
        digests.Clear();
        formed = false;
        group++; // the old group's late words (ready, left, digests) no longer count
        if (status != RunStatus.Running) return;
        if (leaving.Count == 0) PlaceGroup();
        else Timers.StartSingleTimer("leaving", new LeavingDeadline(group), TimeSpan.FromSeconds(60));
    }

    /// <summary>
    /// A replica is ready. One learner alone starts its feed at once (also after a restart); a group starts when every
    /// replica is ready at the same step: each gets the others' endpoints, then its own feed of its slice.
    /// </summary>
    private void OnLearnerReady(LearnerReady r)
    {
        if (r.Group != group || r.Rank >= replicas.Count) return; // a learner of a dissolved group, on its way out
        var member = replicas[r.Rank];
        if (member.Learner is null || !member.Learner.Equals(Sender))
        {
            member.Learner = Sender;
            Context.Watch(Sender);
        }
        member.Ready = r;
        if (status == RunStatus.Stopped)
        {
            if (r.Rank == 0) Sender.Tell(StopLearner.Instance); // started while stopping
            return;
        }
        if (replicas.Count == 1 || formed)
        {
            if (replicas.Count == 1 && !formed) GroupFormed(r.Step);
            StartStream(member, r);
            return;
        }
        if (replicas.Any(m => m.Ready is null)) return;
        if (replicas.Select(m => m.Ready!.Step).Distinct().Count() > 1)
        {
            Regroup("the replicas resumed at different steps (" + string.Join(", ", replicas.Select(m => m.Ready!.Step)) + ")");
            return;
        }
        var endpoints = replicas.Select(m => m.Ready!.Endpoint ?? ActorRefs.Nobody).ToList();
        foreach (var m in replicas) m.Learner!.Tell(new FormGroup(runId, group, endpoints));
        GroupFormed(r.Step);
        foreach (var m in replicas) StartStream(m, m.Ready!);
    }

    private void GroupFormed(long atStep)
    {
        formed = true;
        Cluster.RunMetrics.Replicas.WithLabels(runId).Set(replicas.Count);
        if (replicas.Count < config.Replicas) growAtCheckpoint = true; // a learner node that joins is taken at the next checkpoint
        if (config.Replicas > 1) reporter!.Tell(new GroupFormedAt(atStep, group, replicas.Count, config.GlobalBatchSize(replicas.Count), groupReason));
    }

    private void UpdateHosts(RunHosts updated)
    {
        var added = updated.Learners.Concat(updated.Data).Concat(updated.Evaluators).Except(hosts.Learners.Concat(hosts.Data).Concat(hosts.Evaluators)).ToList();
        bool dataChanged = !updated.Data.SequenceEqual(hosts.Data);
        hosts = updated;
        foreach (var h in added) Context.Watch(h);
        if (!started || finished) return;
        if (!PlaceGroupIfNone() && replicas.Count < config.Replicas && LiveLearnerHosts().Count > replicas.Count) growAtCheckpoint = formed;
        if (dataChanged && !learnerDone && status == RunStatus.Running)
            foreach (var m in replicas) m.Learner?.Tell(new ReportPosition(runId));
        if (options.Hosts is null) foreach (var (key, _) in pending.Where(p => p.Value is null).ToList()) SendProbe(key.Step, key.Dataset);
    }

    /// <summary>A host died: its learner is placed again (its group re-formed), its shard reassigned, its probes asked elsewhere.</summary>
    private void HostGone(IActorRef host)
    {
        foreach (var (learner, _) in leaving.Where(l => l.Value.Equals(host)).ToList()) leaving.Remove(learner);
        bool known = hosts.Learners.Concat(hosts.Data).Concat(hosts.Evaluators).Contains(host) || pending.Values.Contains(host);
        if (!known) // a host the run manager already reported gone, or a dissolved group's learner: only a wait may end
        {
            PlaceGroupIfNone();
            return;
        }
        deadHosts.Add(host);
        hosts = new RunHosts(hosts.Learners.Where(h => !h.Equals(host)).ToList(), hosts.Data.Where(h => !h.Equals(host)).ToList(),
            hosts.Evaluators.Where(h => !h.Equals(host)).ToList());
        if (!started || finished) return;
        if (!PlaceGroupIfNone() && replicas.Any(m => m.Host.Equals(host) && m.Learner is null) && !learnerDone)
            Regroup("a learner node left before its replica started", counts: false);
        if (!learnerDone && status == RunStatus.Running)
            foreach (var m in replicas) m.Learner?.Tell(new ReportPosition(runId)); // refeed without it
        foreach (var (key, owner) in pending.Where(p => host.Equals(p.Value)).ToList())
        {
            log.Warning("the evaluator taking step {0} on {1} is gone; asking another", key.Step, key.Dataset);
            SendProbe(key.Step, key.Dataset);
        }
    }

    /// <summary>A warning the user hears of: in the record (a failure to write it is only logged), on the run's progress topic.</summary>
    private void Warn(string message)
    {
        try
        {
            store?.AddWarning(runId, step, message);
        }
        catch (Exception e) when (e is RunStoreException or IOException)
        {
            log.Error("could not record the warning '{0}': {1}", message, e.Message);
        }
        progress?.Tell(new RunWarning(runId, step, message));
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

    /// <summary>The step-0 (random) encoder only when include_random_init says so, whatever "when" says; others by "when".</summary>
    private bool ShouldEvaluate(long checkpointStep, bool final) =>
        config.Evaluation.Datasets.Count > 0 && status == RunStatus.Running
        && (checkpointStep == 0 ? config.Evaluation.IncludeRandomInit : config.Evaluation.When == "every" || final);

    /// <summary>Asks for a probe of the checkpoint on every transfer set that has no result for it yet.</summary>
    private void Probe(CheckpointSaved c)
    {
        foreach (var ds in config.Evaluation.Datasets)
        {
            if (results.Any(r => r.Step == c.Step && r.Dataset == ds.Name) || pending.ContainsKey((c.Step, ds.Name))) continue;
            failedProbes.RemoveAll(f => f.Step == c.Step && f.Dataset == ds.Name);
            pending[(c.Step, ds.Name)] = null;
            probeCheckpoints[(c.Step, ds.Name)] = c;
            SendProbe(c.Step, ds.Name);
        }
    }

    /// <summary>
    /// On a cluster a probe request is published on the <see cref="ProbeTopic"/> to the evaluator nodes' group (one of
    /// them takes it and says so); until one has, it is published again every few seconds, so an evaluator node that
    /// joins late picks up the checkpoints that still lack a result. On one node it goes to the run's own evaluator host.
    /// </summary>
    private void SendProbe(long checkpointStep, string dataset)
    {
        pending[(checkpointStep, dataset)] = null;
        var request = new ProbeRequest(config, probeCheckpoints[(checkpointStep, dataset)], dataset, Self);
        if (options.Hosts is not null)
        {
            Akka.Cluster.Tools.PublishSubscribe.DistributedPubSub.Get(Context.System).Mediator
                .Tell(new Akka.Cluster.Tools.PublishSubscribe.Publish(ProbeTopic, request, sendOneMessageToEachGroup: true));
            Timers.StartPeriodicTimer("probes-unclaimed", new RepublishProbes(), TimeSpan.FromSeconds(5));
            return;
        }
        var candidates = hosts.Evaluators.Where(h => !deadHosts.Contains(h)).ToList();
        if (candidates.Count == 0) return; // bounded by probe_timeout_seconds once training is done
        candidates[nextEvaluator++ % candidates.Count].Tell(request);
    }

    /// <summary>The DistributedPubSub topic evaluator hosts subscribe to (in group <see cref="ProbeGroup"/>).</summary>
    public const string ProbeTopic = "probes";
    public const string ProbeGroup = "evaluators";

    /// <summary>Prunes old checkpoints, never one a probe still has to read, and keeps the record in step with the disk.</summary>
    private void Prune()
    {
        stage = "pruning checkpoints";
        foreach (var deleted in checkpoints!.Prune(BestStep(), pending.Keys.Select(p => p.Step)))
            store!.RemoveCheckpoint(runId, deleted);
        stage = "running";
    }

    private long? BestStep()
    {
        var first = config.Evaluation.Datasets.FirstOrDefault()?.Name;
        return results.Where(r => r.Dataset == first && r.Step > 0).OrderByDescending(r => r.Value).Select(r => (long?)r.Step).FirstOrDefault();
    }

    /// <summary>The data pipelines' counters, summed over the data nodes, into metrics.jsonl and TensorBoard.</summary>
    private void WriteDataMetrics(long atStep)
    {
        if (dataReports.Count == 0) return;
        var d = dataReports.Values;
        if (d.Count > 1) // each data node's own counters (bad records per node), then their sum
            foreach (var n in d)
                reporter!.Tell(new DataMetricsAt(atStep, n.SamplesPerSecond, n.BytesPerSecond, n.BadRecords, n.RecordsRead, n.QueuedSamples, n.Node));
        reporter!.Tell(new DataMetricsAt(atStep, d.Sum(x => x.SamplesPerSecond), d.Sum(x => x.BytesPerSecond), d.Sum(x => x.BadRecords),
            d.Sum(x => x.RecordsRead), d.Sum(x => x.QueuedSamples)));
    }

    /// <summary>
    /// Opens feed generation g for one replica from its position: data host k of N makes the batches whose global
    /// index is k mod N, each cut to the replica's slice. An older generation's batches are dropped by the learner, so
    /// none is trained twice or skipped.
    /// </summary>
    private void StartStream(Replica member, LearnerReady ready)
    {
        if (ready.Rank == 0) step = ready.Step;
        if (ready.Step >= config.Steps) return;
        stage = "starting the data stream";
        int gen = ++generation;
        member.Generation = gen;
        var data = LiveDataHosts();
        if (data.Count == 0)
        {
            log.Warning("run {0}: no data node; the learner waits until one joins", runId);
            if (!Timers.IsTimerActive("placement-data"))
                Timers.StartSingleTimer("placement-data", new PlacementDeadline(Roles.Data), TimeSpan.FromSeconds(config.PlacementTimeoutSeconds));
        }
        else Timers.Cancel("placement-data");
        int globalBatch = config.GlobalBatchSize(replicas.Count);
        for (int k = 0; k < data.Count; k++)
            data[k].Tell(new OpenFeed(runId, config, ready.Position, gen, k, data.Count, member.Learner!, Self, ready.Rank, replicas.Count, globalBatch));
        log.Info("feed {0} of {1} data node(s) starts at {2} for replica {3} at step {4}", [gen, data.Count, ready.Position, ready.Rank, ready.Step]);
        stage = "running";
    }

    /// <summary>Ends the run once training is done, no probe is owed and the final step's replica digests are in (or late).</summary>
    private void TryFinish()
    {
        if (!learnerDone || pending.Count > 0) return;
        if (digests.ContainsKey(step) && !finalDigestsLate)
        {
            if (!Timers.IsTimerActive("final-digests")) Timers.StartSingleTimer("final-digests", new FinalDigestsLate(), TimeSpan.FromSeconds(10));
            return;
        }
        Finish();
    }

    private void Fail(string reason)
    {
        if (finished || finishing) return;
        if (status == RunStatus.Failed) return;
        status = RunStatus.Failed;
        error = reason;
        log.Error("run {0} failed: {1}", runId, reason);
        Finish();
    }

    /// <summary>
    /// Ends the run whatever else fails: the reporter writes plots and report.md (given at most 60 s), the record is
    /// written as far as it can be (a failure there is added to the error), the hosts are told to let go of the run,
    /// then every waiter is answered and the coordinator stops.
    /// </summary>
    private void Finish()
    {
        if (finishing || finished) return;
        finishing = true;
        if (status == RunStatus.Completed && failedProbes.Count > 0)
        {
            status = RunStatus.Failed;
            error = $"pretraining completed at step {step}, but {failedProbes.Count} probe(s) failed: " +
                    string.Join("; ", failedProbes.OrderBy(f => f.Step).Take(5).Select(f => $"step {f.Step} on {f.Dataset}: {f.Reason}")) +
                    (failedProbes.Count > 5 ? "; ..." : "") + ". `metamae resume` redoes them";
        }
        var ordered = results.OrderBy(r => r.Dataset).ThenBy(r => r.Step).ToList();
        done = new RunFinished(runId, status, step, Path.GetFullPath(runDirectory), ordered, error);
        if (reporter is null)
        {
            Complete([]);
            return;
        }
        reporter.Tell(new WriteFinalReport(status, step, configJson, ordered, error, failedProbes.ToList()));
        Context.SetReceiveTimeout(TimeSpan.FromSeconds(60));
    }

    private void Complete(IReadOnlyList<string> reportProblems)
    {
        if (finished) return;
        finished = true;
        Context.SetReceiveTimeout(null);
        var problems = reportProblems.ToList();
        try
        {
            store?.FinishRun(runId, status, step, error);
        }
        catch (Exception e)
        {
            log.Error("could not update the run record: {0}", e.Message);
            problems.Add($"could not update the run record: {Failures.Describe(e)}");
        }
        var message = problems.Count == 0 ? error : string.Join("; ", new[] { error }.Concat(problems).Where(m => m is not null));
        var result = done! with { Error = message };
        // Replicas wake from any collective; hosts let go of the run, files are closed and the directory released before
        // anyone hears the run ended.
        foreach (var m in replicas) m.Ready?.Endpoint?.Tell(new DissolveGroup(runId, group, "the run ended"));
        foreach (var h in hosts.Learners.Concat(hosts.Data).Concat(hosts.Evaluators)) h.Tell(new RunEnded(runId));
        if (reporter is not null) Context.Stop(reporter);
        Cluster.RunMetrics.Finished(runId);
        Release();
        foreach (var w in waiting) w.Tell(result);
        progress?.Tell(result);
        Context.Stop(Self);
    }

    protected override void PostStop() => Release();

    /// <summary>Closes files and frees the directory; never throws (a full disk fails the flush of a close).</summary>
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
        Quietly(() => store?.Dispose());
        store = null;
        if (ownsLock) Quietly(() => directoryLock?.Dispose());
        ownsLock = false;
    }
}

/// <summary>Akka.Hosting wiring shared by every node: the pipeline's dispatchers and the message serializer.</summary>
public static class RunCoordinatorHosting
{
    /// <summary>
    /// The pipeline's dispatchers (HOCON: Akka.Hosting has no API for them) and the serializer of every
    /// <see cref="IMetaMaeMessage"/>, bound through the marker interface.
    /// </summary>
    public static AkkaConfigurationBuilder WithMetaMaeDispatchers(this AkkaConfigurationBuilder builder) =>
        builder.AddHocon(MetaMaeHocon.Dispatchers, HoconAddMode.Prepend)
            .WithCustomSerializer("metamae", [typeof(IMetaMaeMessage)], system => new MetaMaeSerializer(system));
}
