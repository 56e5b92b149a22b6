using Akka.Actor;

namespace MetaMae.Protocol;

/// <summary>
/// Every replica of group <see cref="Group"/> is ready: <see cref="Endpoints"/>[r] is where replica r takes gradient
/// chunks as messages (its <see cref="DissolveGroup"/> too), <see cref="DataPlanes"/>[r] its data plane's host:port
/// (null: the chunks travel as messages). Sent by the coordinator to each replica before it opens their feeds.
/// </summary>
public sealed record FormGroup(string RunId, int Group, IReadOnlyList<IActorRef> Endpoints, IReadOnlyList<string?>? DataPlanes = null) : IMetaMaeMessage;

/// <summary>
/// The group is over (a replica was lost, a node joined, the run ended): a replica blocked in a collective wakes with
/// the reason and stops. Sent to each replica's endpoint, which is not blocked by the step.
/// </summary>
public sealed record DissolveGroup(string RunId, int Group, string Reason) : IMetaMaeMessage;

/// <summary>
/// A replica left its group (a collective failed or the group was dissolved); the coordinator re-forms it.
/// <see cref="PeerLost"/>: it left because a neighbour's connection broke, a consequence whose cause the failed
/// replica reports itself.
/// </summary>
public sealed record ReplicaLeft(string RunId, int Group, int Rank, string Reason, bool PeerLost = false) : IMetaMaeMessage;

/// <summary>
/// One chunk of a ring all-reduce between replicas of group <see cref="Group"/>: operation <see cref="Op"/>, ring step
/// <see cref="Step"/>, chunk <see cref="Index"/>, covering elements [<see cref="Offset"/>, Offset + Count) of the
/// gradient buffer, as fp32 (<see cref="Values"/>) or bf16 (<see cref="Half"/>). Serialized as raw arrays.
/// </summary>
public sealed record GradientChunk(int Group, long Op, int Step, int Index, int Offset, int Count, float[]? Values, ushort[]? Half) : IMetaMaeMessage;

/// <summary>
/// A replica's parameter digest (SHA-256 of every parameter and float buffer) at a checkpoint step: the coordinator
/// checks that the group's replicas are still identical and records it.
/// </summary>
public sealed record ReplicaDigest(string RunId, int Group, int Rank, long Step, string Digest) : IMetaMaeMessage;
