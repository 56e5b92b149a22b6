using Akka.Actor;
using Akka.Streams;

namespace MetaMae.Protocol;

/// <summary>Node roles: any subset on a node; a one-machine run holds them all.</summary>
public static class Roles
{
    public const string Coordinator = "coordinator";
    public const string Learner = "learner";
    public const string Data = "data";
    public const string Evaluator = "evaluator";

    public static readonly string[] All = [Coordinator, Learner, Data, Evaluator];
}

/// <summary>
/// A host of <paramref name="Role"/> work announces itself to the run manager once, as its node starts (so a run
/// submitted at once already sees it); a manager finds the hosts of every Up member by itself too (after a move).
/// </summary>
public sealed record RegisterHost(string Role, IActorRef Host) : IMetaMaeMessage;

/// <summary>
/// Submits a run to the cluster's run manager. <see cref="Spec"/> is the run's settings (validated again on every
/// node that uses it: a node without CUDA refuses a CUDA run). <see cref="LockToken"/> lets the submitting process hand
/// over the run directory lock it already holds when it is the coordinator's process too.
/// </summary>
public sealed record SubmitRun(string RunId, string RunDirectory, RunSpec Spec, bool FromScratch = false, string? LockToken = null, bool TakeOver = false)
    : IMetaMaeMessage;

/// <summary>
/// Follow a run that is already running (a client that was killed, or another terminal): the run manager adds the
/// sender to the run's waiters and answers <see cref="RunAccepted"/>; a run it does not coordinate now is answered
/// with a <see cref="RunFinished"/> from the record (its recorded status), or a failed one naming what is missing.
/// </summary>
public sealed record FollowRun(string RunId) : IMetaMaeMessage;

/// <summary>The run manager accepted a run; its events go to DistributedPubSub topic <see cref="Topic"/>.</summary>
public sealed record RunAccepted(string RunId, string Topic) : IMetaMaeMessage;

/// <summary>Stop one run cleanly (final checkpoint): sent to the run manager, which passes it on.</summary>
public sealed record StopRunById(string RunId, string Reason) : IMetaMaeMessage;

/// <summary>
/// Asks a learner host to run the learner of a run; the learner reports to <see cref="Coordinator"/>. In a
/// data-parallel group it is replica <see cref="Rank"/> of <see cref="Replicas"/> of group <see cref="Group"/> (a number
/// the coordinator raises each time it forms a group).
/// </summary>
public sealed record StartLearner(string RunId, string RunDirectory, RunSpec Spec, IActorRef Coordinator, int Rank = 0, int Replicas = 1, int Group = 0)
    : IMetaMaeMessage;

/// <summary>
/// A learner host stopped a learner that kept failing (or could not start): the run fails with the reason, unless
/// <see cref="Retryable"/> (a replica of group <see cref="Group"/>, which is re-formed from the latest checkpoint instead).
/// </summary>
public sealed record LearnerGaveUp(string RunId, string Reason, bool Retryable = false, int Group = 0) : IMetaMaeMessage;

/// <summary>The coordinator asks its learner where it stands; the learner answers with <see cref="LearnerReady"/>.</summary>
public sealed record ReportPosition(string RunId) : IMetaMaeMessage;

/// <summary>
/// Asks a data host for shard <see cref="Shard"/> of <see cref="ShardCount"/> of a run's batches from
/// <see cref="Start"/>, as feed <see cref="Generation"/>, offered to <see cref="Learner"/>: of each global batch of
/// <see cref="GlobalBatch"/> (0: the run's batch size), only slice <see cref="Slice"/> of <see cref="SliceCount"/>, the
/// learner's part as a replica.
/// </summary>
public sealed record OpenFeed(string RunId, RunSpec Spec, StreamPosition Start, int Generation, int Shard, int ShardCount,
    IActorRef Learner, IActorRef Coordinator, int Slice = 0, int SliceCount = 1, int GlobalBatch = 0) : IMetaMaeMessage;

/// <summary>
/// A data host's shard of a feed, back-pressured, offered one of two ways: to a learner on another node, as a
/// <see cref="Channel"/> on the data node's batch plane (TCP, the batches' bytes and nothing else); to a learner on
/// the same node (or with the batch plane off), as a stream reference (<see cref="Source"/>).
/// </summary>
public sealed record FeedOffered(string RunId, int Generation, int Shard, int ShardCount, ISourceRef<Batch>? Source, BatchChannel? Channel = null)
    : IMetaMaeMessage;

/// <summary>A feed waiting on a data node's batch plane: its address (host:port) and the token that claims it, once.</summary>
public sealed record BatchChannel(string Address, Guid Token) : IMetaMaeMessage;

/// <summary>The learner's feed broke off (a data node left, a transport failure): the coordinator decides what follows.</summary>
public sealed record FeedInterrupted(string RunId, int Generation, string Reason) : IMetaMaeMessage;

/// <summary>A data host's pipeline counters for one run (published to the coordinator every few seconds).</summary>
public sealed record DataReport(string RunId, string Node, long RecordsRead, long Samples, long BadRecords, long Batches, long QueuedSamples,
    double SamplesPerSecond, double BytesPerSecond) : IMetaMaeMessage;

/// <summary>Probe a checkpoint (published to the evaluator nodes); results go to <see cref="Coordinator"/>.</summary>
public sealed record ProbeRequest(RunSpec Spec, CheckpointSaved Checkpoint, string Dataset, IActorRef Coordinator) : IMetaMaeMessage;

/// <summary>An evaluator host took a probe: the coordinator watches it and asks again elsewhere if it dies.</summary>
public sealed record ProbeAccepted(string RunId, long Step, string Dataset, IActorRef Host) : IMetaMaeMessage;

/// <summary>A run ended: hosts stop what they run for it (learner, feeds, probes).</summary>
public sealed record RunEnded(string RunId) : IMetaMaeMessage;

/// <summary>Asks the run manager for the runs its record holds (answered with <see cref="RunList"/>).</summary>
public sealed record ListRuns : IMetaMaeMessage
{
    public static readonly ListRuns Instance = new();
}

/// <summary>One run as `metamae runs` shows it.</summary>
public sealed record RunSummary(string Id, RunStatus Status, long Step, long TotalSteps, int Checkpoints, string LatestProbes, string Updated,
    string Directory, bool Live, int Warnings = 0);

/// <summary>One cluster member as `metamae runs --cluster` shows it.</summary>
public sealed record NodeSummary(string Address, IReadOnlyList<string> Roles, string Status, bool Reachable);

/// <summary>The runs of a record (<see cref="Source"/>), or why they could not be listed, and the cluster's nodes.</summary>
public sealed record RunList(IReadOnlyList<RunSummary> Runs, string? Source, string? Error, IReadOnlyList<NodeSummary>? Nodes = null) : IMetaMaeMessage;
