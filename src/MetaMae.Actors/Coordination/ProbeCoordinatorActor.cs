using Akka.Actor;
using Akka.Event;
using MetaMae.Protocol;

namespace MetaMae.Actors.Coordination;

/// <summary>
/// The probes of one run (a child of its <see cref="RunCoordinatorActor"/>): it owes a probe per checkpoint and
/// transfer set the config asks for, hands each to one of the evaluator hosts it knows (in turn) and owns the retries,
/// one mechanism for every case: a probe no host has taken within <see cref="CoordinatorSettings.ProbeRetry"/> is asked
/// of the next host, a probe whose host dies is asked of another, and a host that joins gets the probes nobody took.
/// Evaluator hosts answer it directly (it is the "coordinator" of each <see cref="ProbeRequest"/>).
/// <para>
/// Results and failures go to its parent; after each change it has the recorder prune checkpoints, never one a probe
/// still has to read (the owed set lives here, so a prune cannot race it). Once training is over it gives the owed
/// probes probe_timeout_seconds and says <see cref="ProbesSettled"/> when none is owed.
/// </para>
/// <para>
/// evaluation.backlog latest: a probe still waiting when a newer checkpoint is owed one on the same set is skipped (here
/// if no host took it, else by the host's queue, <see cref="EvaluationSkipped"/>); the first skip is a warning, and the
/// count with the steps is one more when the probes settle. A stop leaves the owed probes to `resume` and keeps their
/// checkpoints (a warning says which): no checkpoint owed a probe is ever deleted.
/// </para>
/// </summary>
internal sealed class ProbeCoordinatorActor : ReceiveActor, IWithTimers
{
    private sealed record Retry;
    private sealed record Deadline;

    /// <summary>A probe owed: its checkpoint, the host that took it (null: not yet taken) and the host last asked.</summary>
    private sealed class Owed(CheckpointSaved checkpoint)
    {
        public CheckpointSaved Checkpoint { get; } = checkpoint;
        public IActorRef? TakenBy { get; set; }
        public DateTime AskedAt { get; set; }
    }

    private readonly RunSpec config;
    private readonly string runId;
    private readonly IActorRef recorder;
    private readonly CoordinatorSettings settings;
    private readonly ILoggingAdapter log = Context.GetLogger();
    private readonly Dictionary<(long Step, string Dataset), Owed> owed = [];
    /// <summary>Scores of the probes that reported (the first transfer set's pick the best checkpoint, kept from pruning).</summary>
    private readonly Dictionary<(long Step, string Dataset), double> scores;
    private List<IActorRef> evaluators;
    /// <summary>Steps owed a probe when the run stopped: left to `resume`, their checkpoints kept.</summary>
    private readonly HashSet<long> leftToResume = [];
    private readonly List<(long Step, string Dataset)> skipped = [];
    private int next;
    private bool trainingEnded;
    private bool settled;

    public ProbeCoordinatorActor(RunSpec config, string runId, IActorRef recorder, IReadOnlyList<IActorRef> initialEvaluators,
        IEnumerable<EvaluationResult> measured, CoordinatorSettings settings)
    {
        this.config = config;
        this.runId = runId;
        this.recorder = recorder;
        this.settings = settings;
        evaluators = initialEvaluators.ToList();
        scores = measured.GroupBy(r => (r.Step, r.Dataset)).ToDictionary(g => g.Key, g => g.Last().Value);

        Receive<CheckpointTaken>(t =>
        {
            if (t.Probe) Owe(t.Checkpoint);
            Prune();
        });
        Receive<HostsChanged>(h =>
        {
            var added = h.Hosts.Evaluators.Except(evaluators).ToList();
            evaluators = h.Hosts.Evaluators.ToList();
            foreach (var e in added) Context.Watch(e);
            if (added.Count > 0) foreach (var (key, o) in owed.Where(o => o.Value.TakenBy is null).ToList()) Ask(key, o);
        });
        Receive<ProbeAccepted>(a =>
        {
            if (!owed.TryGetValue((a.Step, a.Dataset), out var o)) return;
            o.TakenBy = a.Host;
            Context.Watch(a.Host);
        });
        Receive<EvaluationResult>(r =>
        {
            if (!owed.Remove((r.Step, r.Dataset))) return; // abandoned by a stop, or answered twice
            scores[(r.Step, r.Dataset)] = r.Value;
            Context.Parent.Tell(r);
            Prune();
            Settle();
        });
        Receive<EvaluationFailed>(f =>
        {
            if (!owed.Remove((f.Step, f.Dataset))) return;
            Context.Parent.Tell(f);
            Prune();
            Settle();
        });
        Receive<EvaluationSkipped>(s =>
        {
            if (!owed.Remove((s.Step, s.Dataset))) return;
            Skipped(s.Step, s.Dataset, s.NewerStep);
            Prune();
            Settle();
        });
        Receive<Retry>(_ =>
        {
            var now = DateTime.UtcNow;
            foreach (var (key, o) in owed.Where(o => o.Value.TakenBy is null && now - o.Value.AskedAt >= settings.ProbeRetry).ToList()) Ask(key, o);
        });
        Receive<Terminated>(t =>
        {
            evaluators.Remove(t.ActorRef);
            foreach (var (key, o) in owed.Where(o => t.ActorRef.Equals(o.Value.TakenBy)).ToList())
            {
                log.Warning("the evaluator taking step {0} on {1} is gone; asking another", key.Step, key.Dataset);
                Ask(key, o);
            }
        });
        Receive<TrainingEnded>(_ =>
        {
            trainingEnded = true;
            if (owed.Count > 0) Timers.StartSingleTimer("deadline", new Deadline(), settings.ProbeTimeout);
            Settle();
        });
        Receive<Deadline>(_ =>
        {
            foreach (var (key, _) in owed.ToList())
                Self.Tell(new EvaluationFailed(runId, key.Step, key.Dataset,
                    $"no evaluator reported within probe_timeout_seconds ({settings.ProbeTimeout.TotalSeconds:0} s) after training ended"));
        });
        Receive<AbandonProbes>(_ =>
        {
            // Probes in flight are redone by `resume`, on checkpoints that are kept for it.
            var left = owed.Keys.OrderBy(k => k.Step).ToList();
            leftToResume.UnionWith(left.Select(k => k.Step));
            owed.Clear();
            Timers.CancelAll();
            if (left.Count > 0)
                Warn($"{left.Count} probe(s) were not run before the run ended; `metamae resume` runs them, and their checkpoints are kept: " +
                     Steps(left));
            SaySkipped();
            if (trainingEnded && !settled)
            {
                settled = true;
                Context.Parent.Tell(new ProbesSettled());
            }
        });
    }

    public static Props Props(RunSpec config, string runId, IActorRef recorder, IReadOnlyList<IActorRef> evaluators,
        IEnumerable<EvaluationResult> measured, CoordinatorSettings settings) =>
        Akka.Actor.Props.Create(() => new ProbeCoordinatorActor(config, runId, recorder, evaluators, measured, settings));

    public ITimerScheduler Timers { get; set; } = null!;

    protected override void PreStart()
    {
        foreach (var e in evaluators) Context.Watch(e);
        Timers.StartPeriodicTimer("retry", new Retry(), settings.ProbeRetry);
    }

    /// <summary>
    /// Owes a probe of the checkpoint on every transfer set that has no result for it yet, and asks for it. With
    /// backlog latest, an older probe of the set that no host has taken is skipped for it.
    /// </summary>
    private void Owe(CheckpointSaved c)
    {
        foreach (var ds in config.Evaluation.Datasets)
        {
            var key = (c.Step, ds.Name);
            if (scores.ContainsKey(key) || owed.ContainsKey(key)) continue;
            if (config.Evaluation.Backlog == ProbeBacklog.Latest)
                foreach (var (old, _) in owed.Where(o => o.Key.Dataset == ds.Name && o.Key.Step < c.Step && o.Key.Step > 0
                                                         && o.Value.TakenBy is null && !o.Value.Checkpoint.Final).ToList())
                {
                    owed.Remove(old);
                    Skipped(old.Step, old.Dataset, c.Step);
                }
            var o = new Owed(c);
            owed[key] = o;
            Ask(key, o);
        }
    }

    /// <summary>Asks the next evaluator host in turn; with none, the probe waits for one to join (or for the deadline).</summary>
    private void Ask((long Step, string Dataset) key, Owed o)
    {
        o.TakenBy = null;
        o.AskedAt = DateTime.UtcNow;
        if (evaluators.Count == 0) return;
        evaluators[next++ % evaluators.Count].Tell(new ProbeRequest(config, o.Checkpoint, key.Dataset, Self));
    }

    private void Prune()
    {
        var first = config.Evaluation.Datasets.FirstOrDefault()?.Name;
        var best = scores.Where(s => s.Key.Dataset == first && s.Key.Step > 0).OrderByDescending(s => s.Value).Select(s => (long?)s.Key.Step)
            .FirstOrDefault();
        recorder.Tell(new PruneCheckpoints(owed.Keys.Select(k => k.Step).Concat(leftToResume).Distinct().ToList(), best));
    }

    private void Skipped(long step, string dataset, long newer)
    {
        skipped.Add((step, dataset));
        if (skipped.Count == 1)
            Warn($"probes are behind training: the probe of step {step} on {dataset} was skipped for step {newer}'s " +
                 "(evaluation.backlog latest probes the newest checkpoint waiting; set it to all to probe every one)");
    }

    private void SaySkipped()
    {
        if (skipped.Count == 0) return;
        Warn($"{skipped.Count} probe(s) of stale checkpoints were skipped (evaluation.backlog latest): {Steps(skipped)}");
        skipped.Clear();
    }

    private static string Steps(IEnumerable<(long Step, string Dataset)> probes) =>
        string.Join("; ", probes.GroupBy(p => p.Dataset).Select(g =>
        {
            var steps = g.Select(p => p.Step).Order().ToList();
            return $"{g.Key} at step{(steps.Count > 1 ? "s" : "")} " + string.Join(", ", steps.Take(20)) + (steps.Count > 20 ? $" and {steps.Count - 20} more" : "");
        }));

    /// <summary>A warning the user hears of through the run (client output, record); the node's log has it at info, not twice.</summary>
    private void Warn(string message)
    {
        log.Info("{0}", message);
        Context.Parent.Tell(new PartWarning(message));
    }

    private void Settle()
    {
        if (!trainingEnded || owed.Count > 0 || settled) return;
        settled = true;
        Timers.Cancel("deadline");
        SaySkipped();
        Context.Parent.Tell(new ProbesSettled());
    }
}
