using Akka.Actor;
using MetaMae.Model.Distributed;
using MetaMae.Protocol;

namespace MetaMae.Actors;

/// <summary>
/// Where a learner replica's peers send their gradient chunks. A child of the learner on the default dispatcher, so it
/// keeps taking chunks (and a <see cref="DissolveGroup"/>) while the learner's thread is blocked in a collective; it
/// hands them to the learner's <see cref="ChunkInbox"/>. Chunks of another group are stale and dropped.
/// </summary>
public sealed class ReplicaEndpointActor : ReceiveActor
{
    public const string Name = "replica-endpoint";

    public ReplicaEndpointActor(int group, ChunkInbox inbox)
    {
        Receive<GradientChunk>(c => c.Group == group, c => inbox.Post(new RingChunk(c.Group, c.Op, c.Step, c.Index, c.Offset, c.Count, c.Values, c.Half)));
        Receive<GradientChunk>(_ => { });
        Receive<DissolveGroup>(d => d.Group == group, d => inbox.Dissolve(d.Reason));
    }

    public static Props Props(int group, ChunkInbox inbox) => Akka.Actor.Props.Create(() => new ReplicaEndpointActor(group, inbox));

    /// <summary>The ring's send: a chunk to replica <c>to</c>'s endpoint, from whatever thread the learner steps on.</summary>
    public static Action<int, RingChunk> SendTo(IReadOnlyList<IActorRef> endpoints) => (to, chunk) =>
        endpoints[to].Tell(new GradientChunk(chunk.Group, chunk.Op, chunk.Step, chunk.Index, chunk.Offset, chunk.Count, chunk.Values, chunk.Half));
}
