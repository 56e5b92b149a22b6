using Akka.Actor;
using Akka.Event;
using MetaMae.Actors.Reporting;
using MetaMae.Actors.Runs;
using MetaMae.Protocol;

namespace MetaMae.Actors.Coordination;

/// <summary>
/// The learner group of one run (a child of its <see cref="RunCoordinatorActor"/>), its rendezvous as TorchElastic's:
/// it places min(replicas, learner nodes) replicas, one per learner node; forms the group when every replica is ready
/// at the same step (each gets its peers' endpoints); opens each replica's feed on the data hosts and opens it again,
/// as a new generation, when it breaks; checks the replicas' parameter digests; and re-forms the whole group from the
/// latest checkpoint when a replica leaves, fails or its node goes (bounded: re-forms without a step in between fail
/// the run). Learners and data hosts speak to it directly (it is the "coordinator" they are given).
/// <para>
/// To its parent it passes on steps, checkpoints and data counters, says when training ended or stopped, warns of each
/// re-form with its cause (<see cref="PartWarning"/>) and fails the run with <see cref="RunPartFailed"/>. When the run
/// ends (<see cref="EndGroup"/>, or the group stops), the group is dissolved: every replica wakes from its collective
/// and its host lets go of the run.
/// </para>
/// </summary>
internal sealed class LearnerGroupActor : RunPartActor, IWithTimers
{
    private sealed record Refeed(int Generation);
    private sealed record LearnerLost(IActorRef Learner);
    private sealed record PlacementDeadline(string Role);
    private sealed record LeavingDeadline(int Group);
    private sealed record FinalDigestsLate(long Step);
    private sealed record LearnersAwaited;
    /// <summary>A replica left because its neighbour's connection broke: the cause is awaited from the others until then.</summary>
    private sealed record PeerLostCause(int Group, string Reason);

    /// <summary>One replica of the group: where it runs, its learner once ready, and its current feed.</summary>
    private sealed class Replica(IActorRef host)
    {
        public IActorRef Host { get; } = host;
        public IActorRef? Learner { get; set; }
        /// <summary>Its learner's Terminated has arrived (death watch says so only once).</summary>
        public bool Gone { get; set; }
        public LearnerReady? Ready { get; set; }
        public int Generation { get; set; } = -1;
    }

    private readonly RunSpec config;
    private readonly string runId;
    private readonly string runDirectory;
    private readonly CoordinatorSettings settings;
    private readonly ILoggingAdapter log = Context.GetLogger();
    private IReadOnlyList<IActorRef> learnerHosts;
    private IReadOnlyList<IActorRef> dataHosts;
    private readonly HashSet<IActorRef> deadHosts = [];
    /// <summary>The group by rank (one replica when replicas = 1); empty while none is placed.</summary>
    private readonly List<Replica> replicas = [];
    /// <summary>Learners of a dissolved group not yet stopped, with their hosts: the next group waits for them.</summary>
    private readonly Dictionary<IActorRef, IActorRef> leaving = [];
    /// <summary>Each replica's parameter digest at a checkpoint step, until all of the group's are in.</summary>
    private readonly Dictionary<long, string?[]> digests = [];
    /// <summary>The current (or next) group's number: raised as a group is dissolved, so nothing of the old one counts.</summary>
    private int group = 1;
    private bool formed;
    private bool growAtCheckpoint;
    private int regroups;
    private string groupReason = "run started";
    /// <summary>The wait for learner nodes that are members but not yet registered (after a move) is over.</summary>
    private bool learnersAwaited;
    private int generation;
    private int refeeds;
    private int placements;
    private long step;
    private bool started;
    private bool stopping;
    /// <summary>Rank 0 reported the end (finished or stopped): nothing is placed or fed any more.</summary>
    private bool done;
    /// <summary>The final step whose digests are awaited before the end is passed on (null: none awaited).</summary>
    private LearnerFinished? finishing;
    /// <summary>The run ended (<see cref="EndGroup"/>): the group is dissolved and hears nothing more.</summary>
    private bool ended;

    public ITimerScheduler Timers { get; set; } = null!;

    public LearnerGroupActor(RunSpec config, string runId, string runDirectory, RunHosts hosts, CoordinatorSettings settings)
    {
        this.config = config;
        this.runId = runId;
        this.runDirectory = runDirectory;
        this.settings = settings;
        learnerHosts = hosts.Learners;
        dataHosts = hosts.Data;
        Stage = "placing the learner";

        Receive<StartTraining>(_ =>
        {
            started = true;
            PlaceGroup();
        });
        Receive<HostsChanged>(h => UpdateHosts(h.Hosts));
        Receive<EndGroup>(_ => End());
        Receive<StopTraining>(_ =>
        {
            stopping = true;
            // Rank 0 writes the group's final checkpoint; a learner still starting is told when it reports ready.
            if (done || replicas.Count == 0) Context.Parent.Tell(new LearnerStopped(runId, step, ""));
            else replicas[0].Learner?.Tell(StopLearner.Instance);
        });
        Receive<LearnerReady>(r => r.RunId == runId, OnLearnerReady);
        Receive<ReplicaLeft>(l => l.RunId == runId && l.Group == group, l =>
        {
            var reason = $"replica {l.Rank} left group {l.Group}: {l.Reason}";
            // A broken connection is the consequence of a peer's failure, reported by that peer's host a moment later:
            // the re-form waits settings.LearnerLost for it, so the warning names the cause, not the symptom.
            if (l.PeerLost) Timers.StartSingleTimer("peer-lost", new PeerLostCause(l.Group, reason), settings.LearnerLost);
            else Regroup(reason);
        });
        Receive<PeerLostCause>(p =>
        {
            if (p.Group == group) Regroup(p.Reason);
        });
        Receive<ReplicaDigest>(d => d.RunId == runId && d.Group == group && d.Rank < replicas.Count, OnDigest);
        Receive<StepReport>(r =>
        {
            step = r.Step;
            refeeds = 0;
            regroups = 0;
            Context.Parent.Forward(r);
        });
        Receive<DataReport>(d => d.RunId == runId, d => Context.Parent.Forward(d));
        Receive<CheckpointSaved>(c =>
        {
            Context.Parent.Forward(c);
            if (growAtCheckpoint && !c.Final && !stopping && !done && LiveLearnerHosts().Count > replicas.Count)
            {
                growAtCheckpoint = false;
                Regroup($"a learner node joined: the group grows from the checkpoint of step {c.Step}", counts: false, growing: true);
            }
        });
        Receive<LearnerFinished>(f =>
        {
            step = f.Step;
            done = true;
            // The final step's digests (some in, others on their way) are awaited, at most settings.FinalDigests.
            if (digests.ContainsKey(f.Step))
            {
                finishing = f;
                Timers.StartSingleTimer("final-digests", new FinalDigestsLate(f.Step), settings.FinalDigests);
            }
            else Context.Parent.Tell(f);
        });
        Receive<FinalDigestsLate>(l =>
        {
            if (finishing is null) return;
            log.Warning("run {0}: not every replica's parameter digest of step {1} arrived within {2:0} s; finishing without it", runId, l.Step,
                settings.FinalDigests.TotalSeconds);
            EndTraining();
        });
        Receive<LearnerStopped>(s =>
        {
            step = s.Step;
            done = true;
            Context.Parent.Tell(s);
        });
        Receive<LearnerGaveUp>(g => g.RunId == runId, g =>
        {
            if (g.Group != group && g.Group != 0) return; // a replica of a dissolved group: its group is already being re-formed
            if (g.Retryable && replicas.Count > 1) Regroup($"a replica failed: {g.Reason}");
            else Fail(g.Reason);
        });
        Receive<PlacementDeadline>(d =>
        {
            if (done) return;
            if (d.Role == Roles.Learner && replicas.Count == 0)
                Fail($"no learner node to train on within placement_timeout_seconds ({settings.Placement.TotalSeconds:0} s): " +
                     $"{LiveLearnerHosts().Count} learner node(s) up, min_replicas is {config.MinReplicas}; start one with `metamae node --roles learner`");
            else if (d.Role == Roles.Data && LiveDataHosts().Count == 0)
                Fail($"no data node to read {config.Dataset.Name} within placement_timeout_seconds ({settings.Placement.TotalSeconds:0} s); " +
                     "start one with `metamae node --roles data`");
        });
        Receive<LearnersAwaited>(_ =>
        {
            learnersAwaited = true;
            PlaceGroupIfNone();
        });
        Receive<LeavingDeadline>(d =>
        {
            if (d.Group == group && leaving.Count > 0)
                Fail($"{leaving.Count} replica(s) of the dissolved learner group did not stop within {settings.Leaving.TotalSeconds:0} s; " +
                     "not starting a new group beside them");
        });
        Receive<DataStreamFailed>(f => f.RunId == runId, f => Fail($"data stream failed: {f.Reason}"));
        Receive<FeedInterrupted>(f => f.RunId == runId && replicas.Any(m => m.Generation == f.Generation), f =>
        {
            // A data node left or the transport broke: the data hosts say so themselves if the data is at fault;
            // otherwise the feed is opened again from where the learner stands, a bounded number of times in a row.
            if (++refeeds > settings.MaxRefeeds) Fail($"data stream keeps breaking off without progress: {f.Reason}");
            else Timers.StartSingleTimer($"refeed-{f.Generation}", new Refeed(f.Generation), settings.Refeed);
        });
        Receive<Refeed>(r =>
        {
            if (!done && !stopping) replicas.FirstOrDefault(m => m.Generation == r.Generation)?.Learner?.Tell(new ReportPosition(runId));
        });
        Receive<Terminated>(t => leaving.ContainsKey(t.ActorRef), t =>
        {
            leaving.Remove(t.ActorRef);
            PlaceGroupIfNone();
        });
        Receive<Terminated>(t => replicas.Any(m => t.ActorRef.Equals(m.Learner)), t =>
        {
            foreach (var m in replicas.Where(m => t.ActorRef.Equals(m.Learner))) m.Gone = true;
            if (!done) Timers.StartSingleTimer($"learner-lost-{t.ActorRef.Path}", new LearnerLost(t.ActorRef), settings.LearnerLost);
        });
        Receive<LearnerLost>(l =>
        {
            // No word from its host (which reports a learner it gave up on): the learner's node is gone.
            var lost = replicas.FindIndex(m => l.Learner.Equals(m.Learner));
            if (done || lost < 0) return;
            Regroup(replicas.Count == 1 ? "the learner is gone with its node" : $"replica {lost}'s learner is gone with its node", counts: false);
        });
        Receive<Terminated>(t => HostGone(t.ActorRef));
    }

    public static Props Props(RunSpec config, string runId, string runDirectory, RunHosts hosts, CoordinatorSettings settings) =>
        Akka.Actor.Props.Create(() => new LearnerGroupActor(config, runId, runDirectory, hosts, settings));

    /// <summary>After the end the group hears nothing more; an exception in a handler fails the run (<see cref="RunPartActor"/>).</summary>
    protected override bool AroundReceive(Receive receive, object message) => ended || base.AroundReceive(receive, message);

    protected override void PreStart()
    {
        foreach (var h in learnerHosts.Concat(dataHosts)) Context.Watch(h);
    }

    /// <summary>The run ends: every replica wakes from its collective and the hosts let go of the run (once).</summary>
    private void End()
    {
        if (ended) return;
        ended = true;
        done = true;
        Timers.CancelAll();
        foreach (var m in replicas) m.Ready?.Endpoint?.Tell(new DissolveGroup(runId, group, "the run ended"));
        foreach (var h in learnerHosts.Concat(dataHosts)) h.Tell(new RunEnded(runId));
    }

    protected override void PostStop() => End();

    protected override void Fail(string reason)
    {
        done = true;
        Context.Parent.Tell(new RunPartFailed(reason));
    }

    private void OnDigest(ReplicaDigest d)
    {
        if (!digests.TryGetValue(d.Step, out var all)) digests[d.Step] = all = new string?[replicas.Count];
        all[d.Rank] = d.Digest;
        if (all.Any(x => x is null)) return;
        digests.Remove(d.Step);
        if (all.Distinct().Count() == 1)
        {
            Context.Parent.Tell(new ReplicasAgreeAt(d.Step, group, all.Length, all[0]!));
            if (finishing?.Step == d.Step) EndTraining();
        }
        else Fail($"the {all.Length} replicas of learner group {group} diverged at step {d.Step} (parameter digests " +
                  string.Join(", ", all.Select((x, r) => $"{r}: {x![..12]}")) + "); their weights cannot be trusted");
    }

    private void EndTraining()
    {
        Timers.Cancel("final-digests");
        var f = finishing!;
        finishing = null;
        Context.Parent.Tell(f);
    }

    /// <summary>Whether the actor system is a cluster node (a run manager's coordinator) rather than a bare one (specs of single actors).</summary>
    private static bool InCluster => ((ExtendedActorSystem)Context.System).Provider is Akka.Cluster.ClusterActorRefProvider;

    /// <summary>The cluster's members with the learner role that are Up and reachable from here.</summary>
    private int ReachableLearnerMembers()
    {
        if (!InCluster) return LiveLearnerHosts().Count;
        var state = Akka.Cluster.Cluster.Get(Context.System).State;
        return state.Members.Count(m => m.Status == Akka.Cluster.MemberStatus.Up && m.HasRole(Roles.Learner) && !state.Unreachable.Contains(m));
    }

    private List<IActorRef> LiveLearnerHosts() => learnerHosts.Where(h => !deadHosts.Contains(h)).ToList();
    private List<IActorRef> LiveDataHosts() => dataHosts.Where(h => !deadHosts.Contains(h)).ToList();

    /// <summary>
    /// Forms a group of min(replicas, learner nodes) replicas, one per learner node (taken in turn, so a lost learner's
    /// replacement tends to go elsewhere); each resumes from the latest valid checkpoint. With fewer than min_replicas
    /// learner nodes it waits for them to join, at most placement_timeout_seconds.
    /// </summary>
    private void PlaceGroup()
    {
        Stage = "placing the learner";
        var live = LiveLearnerHosts();
        if (live.Count < config.MinReplicas)
        {
            log.Warning("run {0}: {1} learner node(s), {2} needed; the learner starts when enough join", runId, live.Count, config.MinReplicas);
            if (!Timers.IsTimerActive("placement-learner"))
                Timers.StartSingleTimer("placement-learner", new PlacementDeadline(Roles.Learner), settings.Placement);
            return;
        }
        Timers.Cancel("placement-learner");
        // Right after the coordinator moved, learner nodes that are reachable members may not have registered with the
        // new run manager yet: the group waits for them (a few seconds at most) rather than forming with fewer.
        int members = ReachableLearnerMembers();
        if (live.Count < Math.Min(config.Replicas, members) && !learnersAwaited)
        {
            if (!Timers.IsTimerActive("await-learners"))
            {
                log.Info("run {0}: {1} of {2} learner node(s) registered; the group forms when the others have (at most {3:0} s)", runId, live.Count,
                    members, settings.AwaitLearners.TotalSeconds);
                Timers.StartSingleTimer("await-learners", new LearnersAwaited(), settings.AwaitLearners);
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
        Stage = "running";
    }

    /// <summary>
    /// Places a group when the run trains and has none, placed or stopping (a dissolved group's replicas are waited for);
    /// true when it did (or tried to: too few learner nodes waits with a deadline).
    /// </summary>
    private bool PlaceGroupIfNone()
    {
        if (!started || done || stopping || replicas.Count > 0 || leaving.Count > 0) return false;
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
        if (done) return;
        if (counts && ++regroups > Math.Max(3, config.MaxLearnerRestarts))
        {
            Fail($"the learner group keeps breaking up without progress ({regroups - 1} re-forms without a step): {reason}");
            return;
        }
        log.Warning("run {0}: re-forming the learner group from the latest checkpoint: {1}", runId, reason);
        if (!growing) Context.Parent.Tell(new PartWarning($"the learner group re-forms from the latest checkpoint: {reason}"));
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
        if (stopping) return;
        if (leaving.Count == 0) PlaceGroup();
        else Timers.StartSingleTimer("leaving", new LeavingDeadline(group), settings.Leaving);
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
        if (stopping)
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
        var planes = replicas.Select(m => m.Ready!.DataPlane).ToList();
        foreach (var m in replicas) m.Learner!.Tell(new FormGroup(runId, group, endpoints, planes));
        GroupFormed(r.Step, planes.All(p => p is not null) ? "tcp" : "akka");
        foreach (var m in replicas) StartStream(m, m.Ready!);
    }

    private void GroupFormed(long atStep, string transport = "")
    {
        formed = true;
        Cluster.RunMetrics.Replicas.WithLabels(runId).Set(replicas.Count);
        if (replicas.Count < config.Replicas) growAtCheckpoint = true; // a learner node that joins is taken at the next checkpoint
        if (config.Replicas > 1) Context.Parent.Tell(new GroupFormedAt(atStep, group, replicas.Count, config.GlobalBatchSize(replicas.Count), groupReason, transport));
    }

    private void UpdateHosts(RunHosts updated)
    {
        var added = updated.Learners.Concat(updated.Data).Except(learnerHosts.Concat(dataHosts)).ToList();
        bool dataChanged = !updated.Data.SequenceEqual(dataHosts);
        learnerHosts = updated.Learners;
        dataHosts = updated.Data;
        foreach (var h in added) Context.Watch(h);
        if (!started || done) return;
        if (!PlaceGroupIfNone() && replicas.Count < config.Replicas && LiveLearnerHosts().Count > replicas.Count) growAtCheckpoint = formed;
        if (dataChanged && !stopping)
            foreach (var m in replicas) m.Learner?.Tell(new ReportPosition(runId));
    }

    /// <summary>A host died: its learner is placed again (its group re-formed), its shard reassigned.</summary>
    private void HostGone(IActorRef host)
    {
        foreach (var (learner, _) in leaving.Where(l => l.Value.Equals(host)).ToList()) leaving.Remove(learner);
        if (!learnerHosts.Concat(dataHosts).Contains(host)) // a host the run manager already reported gone, or a dissolved group's learner: only a wait may end
        {
            PlaceGroupIfNone();
            return;
        }
        deadHosts.Add(host);
        learnerHosts = learnerHosts.Where(h => !h.Equals(host)).ToList();
        dataHosts = dataHosts.Where(h => !h.Equals(host)).ToList();
        if (!started || done) return;
        if (!PlaceGroupIfNone() && replicas.Any(m => m.Host.Equals(host) && m.Learner is null))
            Regroup("a learner node left before its replica started", counts: false);
        if (!stopping)
            foreach (var m in replicas) m.Learner?.Tell(new ReportPosition(runId)); // refeed without it
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
        Stage = "starting the data stream";
        int gen = ++generation;
        member.Generation = gen;
        var data = LiveDataHosts();
        if (data.Count == 0)
        {
            log.Warning("run {0}: no data node; the learner waits until one joins", runId);
            if (!Timers.IsTimerActive("placement-data"))
                Timers.StartSingleTimer("placement-data", new PlacementDeadline(Roles.Data), settings.Placement);
        }
        else Timers.Cancel("placement-data");
        int globalBatch = config.GlobalBatchSize(replicas.Count);
        for (int k = 0; k < data.Count; k++)
            data[k].Tell(new OpenFeed(runId, config, ready.Position, gen, k, data.Count, member.Learner!, Self, ready.Rank, replicas.Count, globalBatch));
        log.Info("feed {0} of {1} data node(s) starts at {2} for replica {3} at step {4}", [gen, data.Count, ready.Position, ready.Rank, ready.Step]);
        Stage = "running";
    }
}
