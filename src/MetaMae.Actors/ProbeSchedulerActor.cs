using Akka.Actor;
using Akka.Event;
using MetaMae.Actors.Runs;
using MetaMae.Model;
using MetaMae.Protocol;

namespace MetaMae.Actors;

/// <summary>
/// Schedules the linear probes of one run on an evaluator node: an <see cref="EvaluatorActor"/> per transfer set, each
/// given one checkpoint at a time from its own queue. Results and failures go to the coordinator that asked. An evaluator that
/// crashes (its own errors it reports itself) is replaced, the probe it was running is reported failed with the
/// cause, and its queue goes on: a crash never reaches the coordinator's supervision of the learner and the stream.
/// </summary>
internal sealed class ProbeSchedulerActor : SteadyActor
{
    private sealed record Slot(DatasetRef Dataset, Queue<ProbeRequest> Queue)
    {
        public IActorRef? Evaluator;
        public ProbeRequest? Running;
        public int Generation;
    }

    private readonly string runId;
    private readonly EvaluationConfig settings;
    private readonly ModelConfig modelConfig;
    private readonly double maxAbsValue;
    private readonly List<Slot> slots;
    private readonly ILoggingAdapter log = Context.GetLogger();
    private string? lastCrash;

    public ProbeSchedulerActor(string runId, EvaluationConfig settings, ModelConfig modelConfig, double maxAbsValue)
    {
        this.runId = runId;
        this.settings = settings;
        this.modelConfig = modelConfig;
        this.maxAbsValue = maxAbsValue;
        slots = settings.Datasets.Select(d => new Slot(d, new Queue<ProbeRequest>())).ToList();

        Receive<ProbeRequest>(p =>
        {
            var slot = slots.FirstOrDefault(s => s.Dataset.Name == p.Dataset);
            if (slot is null)
            {
                p.Coordinator.Tell(new EvaluationFailed(runId, p.Checkpoint.Step, p.Dataset, $"'{p.Dataset}' is not a transfer set of this run"));
                return;
            }
            // Asked again (the run's coordinator moved to another node): the probe already on its way answers the
            // newest asker, not the one that asked first, which may be gone with its node.
            if (slot.Running is { } r && r.Checkpoint.Step == p.Checkpoint.Step)
            {
                slot.Running = p;
                return;
            }
            if (slot.Queue.Any(q => q.Checkpoint.Step == p.Checkpoint.Step))
            {
                var waiting = slot.Queue.Select(q => q.Checkpoint.Step == p.Checkpoint.Step ? p : q).ToList();
                slot.Queue.Clear();
                foreach (var q in waiting) slot.Queue.Enqueue(q);
                return;
            }
            if (settings.Backlog == ProbeBacklog.Latest)
            {
                // Asked late for an older step than one already here (a retry, a moved coordinator): it is stale at once.
                var newest = slot.Queue.Select(q => q.Checkpoint.Step).Append(slot.Running?.Checkpoint.Step ?? -1).Max();
                if (Skippable(p) && newest > p.Checkpoint.Step)
                {
                    Skip(p, slot.Dataset.Name, newest);
                    return;
                }
                SkipStale(slot, p);
            }
            slot.Queue.Enqueue(p);
            Next(slot);
        });
        Receive<EvaluationResult>(r => Done(r.Dataset, r.Step, r));
        Receive<EvaluationFailed>(f => Done(f.Dataset, f.Step, f));
        Receive<Terminated>(t =>
        {
            var slot = slots.FirstOrDefault(s => t.ActorRef.Equals(s.Evaluator));
            if (slot is null) return;
            slot.Evaluator = null;
            if (slot.Running is { } c)
            {
                slot.Running = null;
                var reason = $"the evaluator crashed: {lastCrash ?? "it stopped"}";
                log.Warning("probe of step {0} on {1} failed: {2}", c.Checkpoint.Step, slot.Dataset.Name, reason);
                c.Coordinator.Tell(new EvaluationFailed(runId, c.Checkpoint.Step, slot.Dataset.Name, reason));
            }
            Next(slot);
        });
    }

    public static Props Props(string runId, EvaluationConfig settings, ModelConfig modelConfig, double maxAbsValue) =>
        Akka.Actor.Props.Create(() => new ProbeSchedulerActor(runId, settings, modelConfig, maxAbsValue));


    /// <summary>A crashed evaluator is stopped (and replaced on demand), never restarted with its probe lost.</summary>
    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(e =>
    {
        lastCrash = e is ActorInitializationException { InnerException: { } inner } ? inner.Message : e.Message;
        return Directive.Stop;
    });

    private void Done(string dataset, long step, object reply)
    {
        var slot = slots.FirstOrDefault(s => s.Dataset.Name == dataset && s.Running?.Checkpoint.Step == step);
        if (slot is null) return; // from an evaluator that was replaced
        var coordinator = slot.Running!.Coordinator;
        slot.Running = null;
        coordinator.Tell(reply);
        Next(slot);
    }

    /// <summary>
    /// evaluation.backlog latest: a newer checkpoint's probe replaces the waiting ones of this set (never step 0's, the
    /// random-init anchor, or a final one), each answered <see cref="EvaluationSkipped"/>; the running probe finishes.
    /// </summary>
    private void SkipStale(Slot slot, ProbeRequest newer)
    {
        var waiting = slot.Queue.ToList();
        slot.Queue.Clear();
        foreach (var q in waiting)
        {
            if (Skippable(q) && q.Checkpoint.Step < newer.Checkpoint.Step) Skip(q, slot.Dataset.Name, newer.Checkpoint.Step);
            else slot.Queue.Enqueue(q);
        }
    }

    private static bool Skippable(ProbeRequest p) => p.Checkpoint.Step > 0 && !p.Checkpoint.Final;

    private void Skip(ProbeRequest p, string dataset, long newer)
    {
        log.Info("skipped the probe of step {0} on {1}: step {2} is newer", p.Checkpoint.Step, dataset, newer);
        p.Coordinator.Tell(new EvaluationSkipped(runId, p.Checkpoint.Step, dataset, newer));
    }

    private void Next(Slot slot)
    {
        if (slot.Running is not null || slot.Queue.Count == 0) return;
        if (slot.Evaluator is null)
        {
            var i = slots.IndexOf(slot);
            slot.Evaluator = Context.ActorOf(EvaluatorActor.Props(runId, slot.Dataset, settings, modelConfig, maxAbsValue),
                $"evaluator-{i}-{slot.Dataset.Name}-{++slot.Generation}");
            Context.Watch(slot.Evaluator);
        }
        slot.Running = slot.Queue.Dequeue();
        slot.Evaluator.Tell(slot.Running.Checkpoint);
    }
}
