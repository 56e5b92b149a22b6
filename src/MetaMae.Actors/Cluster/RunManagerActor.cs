using Akka.Actor;
using Akka.Cluster.Tools.PublishSubscribe;
using Akka.Event;
using MetaMae.Actors.Runs;
using MetaMae.Protocol;

namespace MetaMae.Actors.Cluster;

/// <summary>
/// The cluster's one run manager (a cluster singleton on the coordinator role): it keeps the live learner, data and
/// evaluator hosts (each registers itself and is watched), starts a <see cref="RunCoordinatorActor"/> per submitted
/// run with those hosts and keeps it current as nodes come and go, and publishes each run's events on its topic.
/// When the singleton moves to another node (its node died), the new one rebuilds from the durable run record: runs
/// recorded as running are resumed from their latest valid checkpoint.
/// </summary>
public sealed class RunManagerActor : SteadyActor
{
    public const string Name = "run-manager";

    /// <summary>The DistributedPubSub topic of a run's events (steps, checkpoints, evaluations, the end).</summary>
    public static string Topic(string runId) => $"run-{runId}";

    private readonly Dictionary<string, HashSet<IActorRef>> hosts = Roles.All.ToDictionary(r => r, _ => new HashSet<IActorRef>());
    private readonly Dictionary<string, IActorRef> runs = [];
    private readonly string? resumeFrom;
    private readonly ILoggingAdapter log = Context.GetLogger();

    /// <param name="resumeFrom">A runs directory whose record lists runs to resume when this manager starts (after a move); null: none.</param>
    public RunManagerActor(string? resumeFrom)
    {
        this.resumeFrom = resumeFrom;
        Receive<RegisterHost>(r =>
        {
            if (!hosts.TryGetValue(r.Role, out var set) || !set.Add(r.Host)) return;
            Context.Watch(r.Host);
            log.Info("{0} host joined: {1}", r.Role, r.Host.Path);
            Broadcast();
        });
        Receive<SubmitRun>(Submit);
        Receive<FollowRun>(f =>
        {
            if (runs.TryGetValue(f.RunId, out var live))
            {
                live.Tell(StartRun.Instance, Sender); // one more waiter of the run's end
                Sender.Tell(new RunAccepted(f.RunId, Topic(f.RunId)));
                return;
            }
            Sender.Tell(Recorded(f.RunId));
        });
        Receive<ListRuns>(_ =>
        {
            var nodes = Nodes();
            if (resumeFrom is null)
            {
                Sender.Tell(new RunList([], null, "the coordinator nodes were started without --resume-from, so they know no runs directory", nodes));
                return;
            }
            try
            {
                if (!RunRecord.Exists(resumeFrom)) Sender.Tell(new RunList([], RunRecord.Describe(resumeFrom), null, nodes));
                else
                {
                    using var store = RunRecord.Open(resumeFrom);
                    Sender.Tell(new RunList(RunRecord.Summaries(store, runs.Keys.ToHashSet()), store.Path, null, nodes));
                }
            }
            catch (IOException e)
            {
                Sender.Tell(new RunList([], resumeFrom, e.Message, nodes));
            }
        });
        Receive<StopRunById>(s =>
        {
            if (runs.TryGetValue(s.RunId, out var coordinator)) coordinator.Tell(new StopRun(s.Reason));
        });
        Receive<Terminated>(t =>
        {
            foreach (var (id, _) in runs.Where(r => r.Value.Equals(t.ActorRef)).ToList()) runs.Remove(id);
            if (hosts.Values.Aggregate(false, (removed, set) => set.Remove(t.ActorRef) | removed))
            {
                log.Warning("host left: {0}", t.ActorRef.Path);
                Broadcast();
            }
        });
    }

    /// <summary>The cluster's members as this node sees them: address, roles, status, reachability.</summary>
    private static List<NodeSummary> Nodes()
    {
        var state = Akka.Cluster.Cluster.Get(Context.System).State;
        var unreachable = state.Unreachable.Select(m => m.Address).ToHashSet();
        return state.Members.OrderBy(m => m.Address.ToString(), StringComparer.Ordinal)
            .Select(m => new NodeSummary(m.Address.ToString(), m.Roles.Where(r => !r.StartsWith("dc-", StringComparison.Ordinal)).Order().ToList(),
                m.Status.ToString(), !unreachable.Contains(m.Address)))
            .ToList();
    }

    /// <summary>How the record says a run not coordinated now ended (a run recorded as running was left by a coordinator
    /// that is gone: `metamae resume --cluster` continues it).</summary>
    private RunFinished Recorded(string runId)
    {
        if (resumeFrom is null || !RunRecord.Exists(resumeFrom))
            return new RunFinished(runId, RunStatus.Failed, 0, "", [], $"no run {runId}: the coordinator nodes keep no run record" +
                                                                        (resumeFrom is null ? " (started without --resume-from)" : $" ({RunRecord.Describe(resumeFrom)} does not exist)"));
        try
        {
            using var store = RunRecord.Open(resumeFrom);
            if (store.Runs().FirstOrDefault(r => r.Id == runId) is not { } row)
                return new RunFinished(runId, RunStatus.Failed, 0, "", [], $"no run {runId} in the record {store.Path}");
            var error = store.Error(runId);
            if (row.Status == RunStatus.Running)
                error = $"recorded as running, but no coordinator runs it now; `metamae resume --cluster NODE {row.Directory}` continues it";
            return new RunFinished(runId, row.Status, row.Step, row.Directory, store.Evaluations(runId), error);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException)
        {
            return new RunFinished(runId, RunStatus.Failed, 0, "", [], $"could not read the run record: {e.Message}");
        }
    }

    public static Props Props(string? resumeFrom) => Akka.Actor.Props.Create(() => new RunManagerActor(resumeFrom));

    protected override void PreStart()
    {
        if (resumeFrom is null) return;
        var db = RunRecord.Describe(resumeFrom);
        if (!RunRecord.Exists(resumeFrom)) return;
        try
        {
            using var store = RunRecord.Open(resumeFrom);
            foreach (var row in store.Runs().Where(r => r.Status == RunStatus.Running))
            {
                var json = store.Config(row.Id);
                if (json is null || !Directory.Exists(row.Directory)) continue;
                log.Warning("resuming run {0}, recorded as running (the previous coordinator is gone)", row.Id);
                Self.Tell(new SubmitRun(row.Id, row.Directory, RunSpec.Bind(System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject()), TakeOver: true));
            }
        }
        catch (Exception e) when (e is IOException or InvalidOperationException)
        {
            log.Error("could not read the run record {0} to resume runs: {1}", db, e.Message);
        }
    }

    private RunHosts Current => new(hosts[Roles.Learner].ToList(), hosts[Roles.Data].ToList(), hosts[Roles.Evaluator].ToList());

    private void Broadcast()
    {
        var current = new HostsChanged(Current);
        foreach (var coordinator in runs.Values) coordinator.Tell(current);
    }

    private void Submit(SubmitRun s)
    {
        if (runs.TryGetValue(s.RunId, out var existing))
        {
            existing.Tell(StartRun.Instance, Sender); // submitted again (a client after a move): one more waiter
            Sender.Tell(new RunAccepted(s.RunId, Topic(s.RunId)));
            return;
        }
        if (s.Spec.Refusal() is { } refused)
        {
            Sender.Tell(new RunFinished(s.RunId, RunStatus.Failed, 0, s.RunDirectory, [], $"the coordinator node refused the config: {refused}"));
            return;
        }
        var config = s.Spec;
        var publisher = Context.ActorOf(Akka.Actor.Props.Create(() => new TopicPublisherActor(Topic(s.RunId))));
        var coordinator = Context.ActorOf(RunCoordinatorActor.Props(config, s.RunId, s.RunDirectory, publisher,
            new RunStartOptions { Hosts = Current, LockToken = s.LockToken, FromScratch = s.FromScratch, TakeOver = s.TakeOver }));
        Context.Watch(coordinator);
        runs[s.RunId] = coordinator;
        Sender.Tell(new RunAccepted(s.RunId, Topic(s.RunId)));
        coordinator.Tell(StartRun.Instance, Sender);
    }
}

/// <summary>Publishes whatever it receives on one DistributedPubSub topic.</summary>
public sealed class TopicPublisherActor : ReceiveActor
{
    public TopicPublisherActor(string topic)
    {
        var mediator = DistributedPubSub.Get(Context.System).Mediator;
        ReceiveAny(m => mediator.Tell(new Publish(topic, m)));
    }
}

/// <summary>
/// Registers this node's hosts with the run manager (through the singleton proxy) now and every few seconds, so a
/// manager that moved learns them again.
/// </summary>
public sealed class HostRegistrarActor : ReceiveActor, IWithTimers
{
    private sealed record Tick;

    public ITimerScheduler Timers { get; set; } = null!;

    public HostRegistrarActor(IActorRef manager, IReadOnlyList<RegisterHost> registrations)
    {
        Receive<Tick>(_ =>
        {
            foreach (var r in registrations) manager.Tell(r);
        });
    }

    protected override void PreStart()
    {
        Self.Tell(new Tick());
        Timers.StartPeriodicTimer("register", new Tick(), TimeSpan.FromSeconds(3));
    }
}

/// <summary>
/// A run's client (the command, on any node): subscribes to the run's topic, submits it, passes its events to
/// <paramref name="progress"/>, and completes <see cref="Finished"/> with the run's end, whichever node coordinates it.
/// </summary>
public sealed class RunClientActor : ReceiveActor
{
    private readonly TaskCompletionSource<RunFinished> finished;

    public RunClientActor(IActorRef manager, SubmitRun submit, IActorRef? progress, TaskCompletionSource<RunFinished> finished)
        : this(manager, submit.RunId, submit, progress, finished)
    {
    }

    /// <param name="request">What the manager is asked once the client listens: <see cref="SubmitRun"/> or <see cref="FollowRun"/>.</param>
    public RunClientActor(IActorRef manager, string runId, IMetaMaeMessage request, IActorRef? progress, TaskCompletionSource<RunFinished> finished)
    {
        this.finished = finished;
        var mediator = DistributedPubSub.Get(Context.System).Mediator;
        mediator.Tell(new Subscribe(RunManagerActor.Topic(runId), Self));
        Receive<SubscribeAck>(_ => manager.Tell(request));
        Receive<RunAccepted>(_ => { });
        Receive<RunFinished>(r =>
        {
            progress?.Tell(r);
            finished.TrySetResult(r);
            Context.Stop(Self);
        });
        ReceiveAny(m => progress?.Tell(m));
    }

    public static Props Props(IActorRef manager, SubmitRun submit, IActorRef? progress, TaskCompletionSource<RunFinished> finished) =>
        Akka.Actor.Props.Create(() => new RunClientActor(manager, submit, progress, finished));

    /// <summary>A client of a run that is already running (or ended: the record's word).</summary>
    public static Props Follow(IActorRef manager, string runId, IActorRef? progress, TaskCompletionSource<RunFinished> finished) =>
        Akka.Actor.Props.Create(() => new RunClientActor(manager, runId, new FollowRun(runId), progress, finished));
}
