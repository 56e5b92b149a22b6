using Akka.Actor;
using Akka.Event;
using MetaMae.Actors.Runs;
using MetaMae.Protocol;

namespace MetaMae.Actors;

/// <summary>
/// Runs learners on a learner node: one <see cref="LearnerSupervisorActor"/> per run it is asked for. Never fails
/// itself; a learner that cannot start or keeps failing is reported to its run's coordinator.
/// </summary>
internal sealed class LearnerHostActor : SteadyActor
{
    public const string Name = "learner-host";
    private readonly Dictionary<string, IActorRef> runs = [];
    private int started;

    public LearnerHostActor()
    {
        Receive<StartLearner>(s =>
        {
            if (runs.Remove(s.RunId, out var old)) Context.Stop(old); // a coordinator that moved asks again
            FailPoints.Hit("learner-host.start");
            if (s.Spec.Refusal(Roles.Learner) is { } refused)
            {
                s.Coordinator.Tell(new LearnerGaveUp(s.RunId, $"the learner node refused the config: {refused}"));
                return;
            }
            var supervisor = Context.ActorOf(LearnerSupervisorActor.Props(s.Spec, s.RunId, s.RunDirectory, s.Coordinator, s.Rank, s.Replicas, s.Group),
                $"run-{++started}");
            Context.Watch(supervisor);
            runs[s.RunId] = supervisor;
        });
        Receive<RunEnded>(e =>
        {
            if (runs.Remove(e.RunId, out var supervisor)) Context.Stop(supervisor);
        });
        Receive<Terminated>(t =>
        {
            foreach (var (id, _) in runs.Where(r => r.Value.Equals(t.ActorRef)).ToList()) runs.Remove(id);
        });
    }

    /// <summary>A learner that could not be started is reported like one that gave up (a group's replica: the group re-forms).</summary>
    protected override void Refuse(object message, string reason)
    {
        if (message is StartLearner s)
            s.Coordinator.Tell(new LearnerGaveUp(s.RunId, $"the learner node could not start the learner: {reason}", Retryable: s.Replicas > 1, s.Group));
    }
}

/// <summary>
/// The parent of one run's learner: restarts it (it reloads the latest valid checkpoint) on any failure, up to
/// max_learner_restarts; a non-finite loss or a broken configuration would only repeat, so those stop it. When it
/// gives up it tells the coordinator why and stops. A replica of a group is never restarted alone (it would come back
/// behind its peers): it is stopped and the coordinator re-forms the whole group from the latest checkpoint.
/// </summary>
internal sealed class LearnerSupervisorActor : ReceiveActor
{
    /// <summary>The learner left its group on purpose (the group was dissolved): nothing to report.</summary>
    public sealed record LeftGroup(string Reason);

    private readonly RunSpec config;
    private readonly string runId;
    private readonly bool grouped;
    private readonly ILoggingAdapter log = Context.GetLogger();
    private int restarts;
    private string? error;
    private bool retryable;
    private bool left;

    public LearnerSupervisorActor(RunSpec config, string runId, string runDirectory, IActorRef coordinator, int rank, int replicas, int group)
    {
        this.config = config;
        this.runId = runId;
        grouped = replicas > 1;
        var learner = Context.ActorOf(LearnerActor.Props(config, runId, runDirectory, coordinator, rank, replicas, group), "learner");
        Context.Watch(learner);
        // A learner whose coordinator is gone (its node died or left, the singleton moved) must not train on unseen:
        // its steps and checkpoints would reach nobody. It stops now; the coordinator that takes over places it again.
        Context.Watch(coordinator);
        Receive<LeftGroup>(_ => left = true);
        Receive<Terminated>(t => t.ActorRef.Equals(coordinator), _ =>
        {
            log.Warning("the coordinator of run {0} is gone; stopping its learner (the coordinator that takes over places it again)", runId);
            left = true;
            Context.Stop(learner);
        });
        Receive<Terminated>(_ =>
        {
            if (!left) coordinator.Tell(new LearnerGaveUp(runId, error ?? "the learner stopped", retryable, group));
            Context.Stop(Self);
        });
    }

    public static Props Props(RunSpec config, string runId, string runDirectory, IActorRef coordinator, int rank = 0, int replicas = 1, int group = 0) =>
        Akka.Actor.Props.Create(() => new LearnerSupervisorActor(config, runId, runDirectory, coordinator, rank, replicas, group));

    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(e =>
    {
        var cause = e is ActorInitializationException { InnerException: { } inner } ? inner : e;
        error = $"learner failed: {Failures.Describe(cause)}";
        if (cause is Model.Training.NonFiniteLossException or ConfigException) return Directive.Stop;
        if (grouped)
        {
            retryable = true;
            return Directive.Stop;
        }
        if (restarts >= config.MaxLearnerRestarts)
        {
            error += $" (after {restarts} restart(s), the most max_learner_restarts allows)";
            return Directive.Stop;
        }
        restarts++;
        log.Warning("learner of {0} failed ({1}); restart {2} of at most {3} from the latest valid checkpoint", runId, cause.Message, restarts,
            config.MaxLearnerRestarts);
        return Directive.Restart;
    });
}
