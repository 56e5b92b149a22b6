using Akka.Actor;
using Akka.Event;
using MetaMae.Actors.Runs;
using MetaMae.Protocol;

namespace MetaMae.Actors;

/// <summary>
/// Runs linear probes on an evaluator node: a <see cref="ProbeSchedulerActor"/> per run it is asked about. It tells
/// the coordinator it took each probe (so the coordinator can ask elsewhere if this node dies) and never fails itself.
/// </summary>
internal sealed class EvaluatorHostActor : SteadyActor
{
    public const string Name = "evaluator-host";
    private readonly Dictionary<string, IActorRef> schedulers = [];
    private int made;

    public EvaluatorHostActor()
    {
        Receive<ProbeRequest>(p =>
        {
            var runId = p.Checkpoint.RunId;
            if (!schedulers.TryGetValue(runId, out var scheduler))
            {
                if (p.Spec.Refusal(Roles.Evaluator) is { } refused)
                {
                    p.Coordinator.Tell(new EvaluationFailed(runId, p.Checkpoint.Step, p.Dataset, $"the evaluator node refused the config: {refused}"));
                    return;
                }
                var config = p.Spec;
                scheduler = Context.ActorOf(ProbeSchedulerActor.Props(runId, config.Evaluation, config.ToModelConfig(), config.MaxAbsValue), $"probes-{++made}");
                schedulers[runId] = scheduler;
            }
            Context.GetLogger().Info("took the probe of step {0} on {1} for run {2}", p.Checkpoint.Step, p.Dataset, runId);
            p.Coordinator.Tell(new ProbeAccepted(runId, p.Checkpoint.Step, p.Dataset, Self));
            scheduler.Forward(p);
        });
        Receive<RunEnded>(e =>
        {
            if (schedulers.Remove(e.RunId, out var s)) Context.Stop(s);
        });
    }

    protected override void Refuse(object message, string reason)
    {
        if (message is ProbeRequest p)
            p.Coordinator.Tell(new EvaluationFailed(p.Checkpoint.RunId, p.Checkpoint.Step, p.Dataset, $"the evaluator node could not take the probe: {reason}"));
    }
}
