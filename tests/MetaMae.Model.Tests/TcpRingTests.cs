using System.Diagnostics;
using MetaMae.Model.Distributed;

namespace MetaMae.Model.Tests;

/// <summary>
/// The TCP data plane (<see cref="TcpRingTransport"/>) on loopback, replicas as threads: the same bits as the message
/// ring (<see cref="LocalRing"/>) on 2-4 replicas in fp32 and bf16, and a dead or dissolved peer ends a collective.
/// </summary>
public class TcpRingTests
{
    private static float[] RandomBuffer(int length, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    /// <summary>A group of <paramref name="size"/> wired over loopback, as learners do when their group forms.</summary>
    private static (RingCollective[] Ring, IDisposable[] Owned, ChunkInbox[] Inboxes) Wire(int size, int chunk, TimeSpan timeout, int group = 3)
    {
        var listeners = Enumerable.Range(0, size).Select(_ => new RingListener("127.0.0.1", "127.0.0.1")).ToArray();
        var addresses = listeners.Select(l => l.Address).ToList();
        var inboxes = Enumerable.Range(0, size).Select(_ => new ChunkInbox(timeout)).ToArray();
        var transports = Enumerable.Range(0, size)
            .Select(r => Task.Run(() => TcpRingTransport.Connect(listeners[r], group, r, addresses, timeout, inboxes[r].Dissolved, () => inboxes[r].Reason)))
            .ToArray().Select(t => t.GetAwaiter().GetResult()).ToArray();
        var ring = transports.Select((t, r) => new RingCollective(group, r, size, t, chunk)).ToArray();
        return (ring, [.. transports, .. listeners], inboxes);
    }

    private static T[] OnReplicas<T>(RingCollective[] ring, Func<RingCollective, T> body)
    {
        var tasks = ring.Select(c => Task.Factory.StartNew(() => body(c), TaskCreationOptions.LongRunning)).ToArray();
        Assert.True(Task.WaitAll(tasks, TimeSpan.FromMinutes(2)), "a replica did not finish");
        return tasks.Select(t => t.Result).ToArray();
    }

    [Theory]
    [InlineData(2, 10_007, 1_000, WirePrecision.Float32)]
    [InlineData(3, 10_007, 333, WirePrecision.Float32)]
    [InlineData(4, 3, 1_000, WirePrecision.Float32)] // fewer elements than replicas: some segments are empty
    [InlineData(4, 100_000, 4_096, WirePrecision.Float32)]
    [InlineData(3, 50_000, 7_000, WirePrecision.BFloat16)]
    [InlineData(4, 100_003, RingCollective.DefaultChunkFloats, WirePrecision.BFloat16)]
    public void The_tcp_ring_gives_every_replica_the_same_bits_as_the_message_ring(int size, int length, int chunk, WirePrecision precision)
    {
        var inputs = Enumerable.Range(0, size).Select(r => RandomBuffer(length, 100 + r)).ToArray();
        // Three collectives in a row (as a step makes): the wire keeps them in order.
        float[] Run(RingCollective c)
        {
            var data = inputs[c.Rank].ToArray();
            for (int k = 0; k < 3; k++)
            {
                c.AllReduceSum(data, length, precision);
                for (int i = 0; i < length; i++) data[i] *= 0.5f;
            }
            return data;
        }
        var reference = OnReplicas(LocalRing.Create(size, chunk), Run);
        var (ring, owned, _) = Wire(size, chunk, TimeSpan.FromSeconds(30));
        try
        {
            var outputs = OnReplicas(ring, Run);
            foreach (var o in outputs) Assert.Equal(reference[0], o); // bit-identical to the message ring, on every replica
        }
        finally
        {
            foreach (var d in owned) d.Dispose();
        }
    }

    [Fact]
    public async Task A_dissolved_group_wakes_a_replica_blocked_on_a_silent_peer_with_the_reason()
    {
        var (ring, owned, inboxes) = Wire(2, 1_000, TimeSpan.FromSeconds(60));
        try
        {
            // Replica 1 never calls the collective: replica 0 blocks on its chunk until the group is dissolved.
            var blocked = Task.Run(() => ring[0].AllReduceSum(new float[10_000], 10_000));
            Assert.NotSame(blocked, await Task.WhenAny(blocked, Task.Delay(300)));
            var clock = Stopwatch.StartNew();
            inboxes[0].Dissolve("replica 1's node left the cluster");
            var e = Assert.Throws<AggregateException>(() => blocked.Wait(TimeSpan.FromSeconds(10)));
            Assert.Contains("replica 1's node left", Assert.IsType<CollectiveAbortedException>(e.InnerException).Message);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"woke after {clock.Elapsed}");
        }
        finally
        {
            foreach (var d in owned) d.Dispose();
        }
    }

    [Fact]
    public async Task A_peer_that_stays_silent_past_the_timeout_or_dies_aborts_the_collective_naming_why()
    {
        var (ring, owned, _) = Wire(2, 1_000, TimeSpan.FromMilliseconds(500));
        try
        {
            var silent = Assert.Throws<CollectiveAbortedException>(() => ring[0].AllReduceSum(new float[4_000], 4_000));
            Assert.Contains("collective_timeout_seconds", silent.Message);
        }
        finally
        {
            foreach (var d in owned) d.Dispose();
        }
        (ring, owned, _) = Wire(2, 1_000, TimeSpan.FromSeconds(60));
        try
        {
            var blocked = Task.Run(() => ring[0].AllReduceSum(new float[4_000], 4_000));
            Assert.NotSame(blocked, await Task.WhenAny(blocked, Task.Delay(300)));
            owned[1].Dispose(); // replica 1's connections close, as when its process dies
            var e = Assert.Throws<AggregateException>(() => blocked.Wait(TimeSpan.FromSeconds(10)));
            Assert.IsType<CollectiveAbortedException>(e.InnerException);
        }
        finally
        {
            foreach (var d in owned) d.Dispose();
        }
    }

    [Fact]
    public async Task A_connection_from_another_group_is_turned_away_and_the_ring_still_forms()
    {
        using var stale = new RingListener("127.0.0.1", "127.0.0.1");
        using var listener = new RingListener("127.0.0.1", "127.0.0.1");
        using var other = new RingListener("127.0.0.1", "127.0.0.1");
        // A replica of a dissolved group 2 dials replica 0 of group 3 first; group 3's own replica 1 follows.
        var addresses = new List<string> { listener.Address, other.Address };
        var oldGroup = Task.Run(() => TcpRingTransport.Connect(stale, 2, 1, [listener.Address, stale.Address], TimeSpan.FromSeconds(2), CancellationToken.None, () => null));
        var zero = Task.Run(() => TcpRingTransport.Connect(listener, 3, 0, addresses, TimeSpan.FromSeconds(20), CancellationToken.None, () => null));
        var one = Task.Run(() => TcpRingTransport.Connect(other, 3, 1, addresses, TimeSpan.FromSeconds(20), CancellationToken.None, () => null));
        using var a = await zero;
        using var b = await one;
        await Assert.ThrowsAsync<CollectiveAbortedException>(() => oldGroup); // nobody of group 2 accepts it
        var ring = new[] { new RingCollective(3, 0, 2, a), new RingCollective(3, 1, 2, b) };
        var sums = OnReplicas(ring, c =>
        {
            var data = new float[] { c.Rank + 1, 10 * (c.Rank + 1) };
            c.AllReduceSum(data, 2);
            return data;
        });
        Assert.All(sums, s => Assert.Equal(new float[] { 3, 30 }, s));
    }
}
