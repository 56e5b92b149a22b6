using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Tools.PublishSubscribe;
using Akka.Event;
using MetaMae.Actors.Coordination;
using MetaMae.Actors.Runs;
using MetaMae.Protocol;

namespace MetaMae.Actors.Cluster;

/// <summary>
/// The cluster's one run manager (a cluster singleton on the coordinator role): it keeps the live learner, data and
/// evaluator hosts (found by name on each member that is Up with the role, from cluster membership events, and
/// watched), starts a <see cref="RunCoordinatorActor"/> per submitted
/// run with those hosts and keeps it current as nodes come and go, and publishes each run's events on its topic.
/// When the singleton moves to another node (its node died), the new one rebuilds from the durable run record: runs
/// recorded as running are resumed from their latest valid checkpoint.
/// </summary>
public sealed class RunManagerActor : SteadyActor, IWithTimers
{
    /// <summary>Looks for the host of <see cref="Role"/> on the member at <see cref="Address"/>.</summary>
    private sealed record FindHost(Address Address, string Role);

    public ITimerScheduler Timers { get; set; } = null!;

    public const string Name = "run-manager";

    /// <summary>The DistributedPubSub topic of a run's events (steps, checkpoints, evaluations, the end).</summary>
    public static string Topic(string runId) => $"run-{runId}";

    private readonly Dictionary<string, HashSet<IActorRef>> hosts = Roles.All.ToDictionary(r => r, _ => new HashSet<IActorRef>());
    private readonly Dictionary<string, IActorRef> runs = [];
    /// <summary>The members whose hosts are looked for (Up, not yet removed).</summary>
    private readonly HashSet<Address> members = [];
    private readonly string? resumeFrom;
    private readonly ILoggingAdapter log = Context.GetLogger();

    /// <param name="resumeFrom">A runs directory whose record lists runs to resume when this manager starts (after a move); null: none.</param>
    public RunManagerActor(string? resumeFrom)
    {
        this.resumeFrom = resumeFrom;
        Receive<ClusterEvent.MemberUp>(up => FindHosts(up.Member));
        Receive<FindHost>(f =>
        {
            if (members.Contains(f.Address)) Context.ActorSelection(new RootActorPath(f.Address) / "user" / HostName(f.Role)).Tell(new Identify(f));
        });
        Receive<ActorIdentity>(id => id.MessageId is FindHost, id =>
        {
            var f = (FindHost)id.MessageId;
            if (!members.Contains(f.Address)) return;
            if (id.Subject is null)
            {
                // The node is up but its host not yet started (or the answer was lost): asked again while it is a member.
                Timers.StartSingleTimer(f, f, TimeSpan.FromSeconds(1));
                return;
            }
            AddHost(f.Role, id.Subject);
        });
        Receive<RegisterHost>(r => AddHost(r.Role, r.Host));
        Receive<ClusterEvent.MemberRemoved>(r =>
        {
            members.Remove(r.Member.Address);
            var gone = hosts.Values.SelectMany(set => set).Where(h => h.Path.Address.Equals(r.Member.Address)).ToList();
            foreach (var h in gone)
            {
                foreach (var set in hosts.Values) set.Remove(h);
                log.Warning("host left: {0} (its node was removed)", h.Path);
            }
            if (gone.Count > 0) Broadcast();
        });
        Receive<ClusterEvent.IMemberEvent>(_ => { });
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

    /// <summary>The name each role's host has on its node.</summary>
    private static string HostName(string role) => role switch
    {
        Roles.Learner => LearnerHostActor.Name,
        Roles.Data => DataHostActor.Name,
        Roles.Evaluator => EvaluatorHostActor.Name,
        _ => throw new ArgumentOutOfRangeException(nameof(role), role, "no host has this role"),
    };

    private void AddHost(string role, IActorRef host)
    {
        if (!hosts.TryGetValue(role, out var set) || !set.Add(host)) return;
        Context.Watch(host);
        log.Info("{0} host joined: {1}", role, host.Path);
        Broadcast();
    }

    private void FindHosts(Member member)
    {
        if (!members.Add(member.Address)) return;
        foreach (var role in new[] { Roles.Learner, Roles.Data, Roles.Evaluator }.Where(member.HasRole))
            Self.Tell(new FindHost(member.Address, role));
    }

    protected override void PostStop() => Akka.Cluster.Cluster.Get(Context.System).Unsubscribe(Self);

    protected override void PreStart()
    {
        // Every member that is Up (now, and as members join) is searched for the hosts of its roles.
        Akka.Cluster.Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.MemberUp), typeof(ClusterEvent.MemberRemoved));
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
        if (s.Spec.Refusal(Roles.Coordinator) is { } refused)
        {
            Sender.Tell(new RunFinished(s.RunId, RunStatus.Failed, 0, s.RunDirectory, [], $"the coordinator node refused the config: {refused}"));
            return;
        }
        var config = s.Spec;
        var publisher = Context.ActorOf(Akka.Actor.Props.Create(() => new TopicPublisherActor(Topic(s.RunId))));
        var coordinator = Context.ActorOf(RunCoordinatorActor.Props(config, s.RunId, s.RunDirectory, Current, publisher,
            new RunStartOptions { LockToken = s.LockToken, FromScratch = s.FromScratch, TakeOver = s.TakeOver }));
        Context.Watch(coordinator);
        runs[s.RunId] = coordinator;
        Sender.Tell(new RunAccepted(s.RunId, Topic(s.RunId)));
        coordinator.Tell(StartRun.Instance, Sender);
    }
}

/// <summary>Publishes whatever it receives on one DistributedPubSub topic.</summary>
internal sealed class TopicPublisherActor : ReceiveActor
{
    public TopicPublisherActor(string topic)
    {
        var mediator = DistributedPubSub.Get(Context.System).Mediator;
        ReceiveAny(m => mediator.Tell(new Publish(topic, m)));
    }
}

/// <summary>Asks a run's client to stop the run (a signal): passed on as <see cref="StopRunById"/> once the run is accepted.</summary>
public sealed record StopRequested(string Reason);

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
    private bool accepted;
    private string? stopReason;

    public RunClientActor(IActorRef manager, string runId, IMetaMaeMessage request, IActorRef? progress, TaskCompletionSource<RunFinished> finished)
    {
        this.finished = finished;
        var mediator = DistributedPubSub.Get(Context.System).Mediator;
        mediator.Tell(new Subscribe(RunManagerActor.Topic(runId), Self));
        Receive<SubscribeAck>(_ => manager.Tell(request));
        Receive<RunAccepted>(_ =>
        {
            accepted = true;
            if (stopReason is not null) manager.Tell(new StopRunById(runId, stopReason));
        });
        Receive<StopRequested>(s =>
        {
            // Passed on once the run is accepted: a stop told before the submission would reach no run.
            stopReason = s.Reason;
            if (accepted) manager.Tell(new StopRunById(runId, s.Reason));
        });
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
