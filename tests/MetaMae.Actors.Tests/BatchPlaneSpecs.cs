using System.Buffers.Binary;
using Akka.Streams;
using Akka.Streams.Dsl;
using MetaMae.Actors.Feeds;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;

/// <summary>
/// The batch plane on loopback: a data node's feed claimed by token and pulled over TCP, frames that carry batches bit
/// for bit, back-pressure from the learner's reads to the producing stream, and every way a feed ends.
/// </summary>
public sealed class BatchPlaneSpecs : MetaMaeTestKit
{
    private static Batch Numbered(int i, int floats = 96) =>
        new(4, [floats / 4], Enumerable.Range(0, floats).Select(k => i * 1000f + k + 0.25f).ToArray(), null, [i, 1, 2, 3], 1, new StreamPosition(i / 10, i % 10), i);

    private BatchPlaneServer Plane(double subscriptionSeconds = 60) =>
        new("127.0.0.1", "127.0.0.1", 0, 1, TimeSpan.FromSeconds(subscriptionSeconds), Sys.Log);

    /// <summary>Materializes <paramref name="source"/> into the plane's sink, offered; the producer's termination to watch.</summary>
    private (BatchChannel Channel, Task Done) Offer(BatchPlaneServer plane, Source<Batch, Akka.NotUsed> source)
    {
        var ((kill, done), queue) = source.ViaMaterialized(KillSwitches.Single<Batch>(), Keep.Right).WatchTermination(Keep.Both)
            .ToMaterialized(BatchPlaneServer.Sink(), Keep.Both).Run(Sys.Materializer());
        return (plane.Offer(queue, kill, "spec feed"), done);
    }

    private static void AssertSame(Batch expected, Batch actual)
    {
        Assert.Equal((expected.Size, expected.LabelsPerSample, expected.End, expected.Sequence), (actual.Size, actual.LabelsPerSample, actual.End, actual.Sequence));
        Assert.Equal(expected.SampleShape, actual.SampleShape);
        Assert.Equal(expected.Values, actual.Values);
        Assert.Equal(expected.Ids, actual.Ids);
        Assert.Equal(expected.Labels, actual.Labels);
    }

    [Fact]
    public void Frames_carry_float_and_token_batches_bit_for_bit_then_the_end()
    {
        var floats = new Batch(2, [1, 2, 2], [0.5f, -1f, float.NaN, 4f, 5f, float.MaxValue, -0f, float.Epsilon], null, [1f, 0f], 1, new StreamPosition(3, 8), 9);
        var tokens = new Batch(2, [3], null, [1, long.MaxValue, 3, 4, 5, -6], [1, 0, 1, 1, 0, 0], 3, new StreamPosition(0, 2), 10);
        using var stream = new MemoryStream();
        BatchFrames.WriteBatch(stream, floats);
        BatchFrames.WriteBatch(stream, tokens);
        BatchFrames.WriteEnd(stream);
        stream.Position = 0;
        var first = BatchFrames.Read(stream, "spec")!;
        Assert.Equal(floats.Values!.Select(BitConverter.SingleToInt32Bits), first.Values!.Select(BitConverter.SingleToInt32Bits));
        AssertSame(floats, first);
        AssertSame(tokens, BatchFrames.Read(stream, "spec")!);
        Assert.Null(BatchFrames.Read(stream, "spec"));
    }

    /// <summary>A frame whose header is patched at <paramref name="offset"/> with <paramref name="value"/>.</summary>
    private static MemoryStream Patched(int offset, long value, int bytes)
    {
        var stream = new MemoryStream();
        BatchFrames.WriteBatch(stream, Numbered(1, 8));
        var frame = stream.ToArray();
        if (bytes == 8) BinaryPrimitives.WriteInt64LittleEndian(frame.AsSpan(offset), value);
        else BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(offset), (int)value);
        return new MemoryStream(frame);
    }

    // Header layout: magic 0, kind 4, size 5, rank 9, labels per sample 13, epoch 17, offset 25, sequence 33,
    // values 41, ids 49, labels 57, then the dimensions.
    [Theory]
    [InlineData(41, 1L << 40, 8, "more than the frame limit")] // a trillion floats claimed by a 100-byte frame
    [InlineData(41, long.MaxValue, 8, "more than the frame limit")] // counts whose byte sizes overflow 64 bits
    [InlineData(57, (1L << 62) + 1, 8, "more than the frame limit")]
    [InlineData(41, -5, 8, "none negative")]
    [InlineData(49, 8, 8, "exactly one of values and ids")]
    [InlineData(9, 9, 4, "at most 8 dimensions")]
    [InlineData(5, -1, 4, "at most 8 dimensions, none negative")]
    [InlineData(0, 0x12345678, 4, "not a batch frame")]
    public void A_hostile_header_is_refused_before_anything_is_allocated(int offset, long value, int bytes, string reason)
    {
        using var frame = Patched(offset, value, bytes);
        var before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InvalidDataException>(() => BatchFrames.Read(frame, "the batch feed from data node 10.0.0.7:4056", maxFrameBytes: 1 << 20));
        Assert.Contains("the batch feed from data node 10.0.0.7:4056", e.Message);
        Assert.Contains(reason, e.Message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64 << 10, "the refusal allocated what the header claimed");
    }

    [Fact]
    public void An_error_frame_is_the_data_nodes_reason_and_a_truncated_frame_is_an_end_of_stream()
    {
        using var error = new MemoryStream();
        BatchFrames.WriteError(error, "too many bad records (12 of 20) in shard 0");
        error.Position = 0;
        var e = Assert.Throws<IOException>(() => BatchFrames.Read(error, "the batch feed from data node 10.0.0.7:4056"));
        Assert.Equal("the batch feed from data node 10.0.0.7:4056: too many bad records (12 of 20) in shard 0", e.Message);

        using var whole = new MemoryStream();
        BatchFrames.WriteBatch(whole, Numbered(2));
        using var cut = new MemoryStream(whole.ToArray()[..^7]);
        Assert.Throws<EndOfStreamException>(() => BatchFrames.Read(cut, "spec"));
    }

    [Fact]
    public async Task A_claimed_feed_streams_every_batch_in_order_then_completes_and_so_does_its_producer()
    {
        using var plane = Plane();
        var sent = Enumerable.Range(0, 40).Select(i => Numbered(i)).ToList();
        var (channel, done) = Offer(plane, Source.From(sent));
        var received = await BatchPlaneSource.Of(channel, CancellationToken.None).RunWith(Sink.Seq<Batch>(), Sys.Materializer());
        Assert.Equal(sent.Count, received.Count);
        for (int i = 0; i < sent.Count; i++) AssertSame(sent[i], received[i]);
        await done.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(done.IsCompletedSuccessfully);
    }

    [Fact]
    public async Task A_learner_that_stops_reading_stops_the_producer_and_one_that_reads_again_gets_the_rest()
    {
        using var plane = Plane();
        int produced = 0;
        const int total = 300, floats = 1 << 18; // 1 MiB batches: 300 MiB if nothing held the producer back
        var (channel, _) = Offer(plane, Source.From(Enumerable.Range(0, total)).Select(i =>
        {
            Interlocked.Increment(ref produced);
            return Numbered(i, floats);
        }));
        var queue = BatchPlaneSource.Of(channel, CancellationToken.None)
            .RunWith(Sink.Queue<Batch>().WithAttributes(Attributes.CreateInputBuffer(1, 1)), Sys.Materializer());
        for (int i = 0; i < 3; i++) Assert.Equal(i, (await queue.PullAsync()).Value.Sequence);
        // The two sockets' buffers (measured here: about 45 MiB on loopback, whatever the batch size) and a few batches in
        // the stages' buffers are all that may run ahead.
        const int bound = 80;
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (Volatile.Read(ref produced) <= bound && watch.Elapsed < TimeSpan.FromSeconds(3)) await Task.Delay(50);
        Assert.InRange(Volatile.Read(ref produced), 3, bound);
        for (int i = 3; i < total; i++) Assert.Equal(i, (await queue.PullAsync()).Value.Sequence);
        Assert.False((await queue.PullAsync()).HasValue);
    }

    [Fact]
    public async Task A_learner_that_goes_away_shuts_its_feed_down_at_the_data_node()
    {
        using var plane = Plane();
        var (channel, done) = Offer(plane, Source.Repeat(Numbered(1, 1 << 16)));
        using var cancel = new CancellationTokenSource();
        var queue = BatchPlaneSource.Of(channel, cancel.Token).RunWith(Sink.Queue<Batch>(), Sys.Materializer());
        Assert.True((await queue.PullAsync()).HasValue);
        cancel.Cancel(); // the learner's connection closes (a replaced feed, a stopped learner)
        await done.WaitAsync(TimeSpan.FromSeconds(30)); // the endless producer ends, without a failure
        Assert.True(done.IsCompletedSuccessfully);
    }

    [Fact]
    public async Task A_producer_failure_reaches_the_learner_as_the_data_nodes_reason()
    {
        using var plane = Plane();
        var (channel, _) = Offer(plane, Source.From(Enumerable.Range(0, 2)).Select(i => Numbered(i))
            .Concat(Source.Failed<Batch>(new InvalidDataException("shard 0: 12 of 20 records were bad, over max_bad_fraction"))));
        var received = new List<Batch>();
        var e = await Assert.ThrowsAsync<IOException>(() =>
            BatchPlaneSource.Of(channel, CancellationToken.None).RunForeach(received.Add, Sys.Materializer()));
        Assert.Equal(2, received.Count);
        Assert.Equal($"the batch feed from data node {plane.Address}: shard 0: 12 of 20 records were bad, over max_bad_fraction", e.Message);
    }

    [Fact]
    public async Task A_data_node_that_goes_away_breaks_the_learners_feed_off_naming_it()
    {
        var plane = Plane();
        var (channel, _) = Offer(plane, Source.Repeat(Numbered(1, 1 << 16)));
        var queue = BatchPlaneSource.Of(channel, CancellationToken.None).RunWith(Sink.Queue<Batch>(), Sys.Materializer());
        Assert.True((await queue.PullAsync()).HasValue);
        plane.Dispose(); // its node stops: every connection closes
        var e = await Assert.ThrowsAnyAsync<IOException>(async () =>
        {
            while ((await queue.PullAsync()).HasValue) { }
        });
        Assert.Contains($"data node {plane.Address}", e.Message);
    }

    [Fact]
    public async Task A_feed_nobody_claims_is_shut_down_after_the_subscription_timeout_and_cannot_be_claimed_later()
    {
        using var plane = Plane(subscriptionSeconds: 1);
        var (channel, done) = Offer(plane, Source.Repeat(Numbered(1)));
        await done.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(done.IsCompletedSuccessfully);
        var e = await Assert.ThrowsAsync<IOException>(() => BatchPlaneSource.Of(channel, CancellationToken.None).RunWith(Sink.Seq<Batch>(), Sys.Materializer()));
        Assert.Contains("no such feed", e.Message);
        // A token is claimed once, and an unknown one is refused the same way.
        var e2 = await Assert.ThrowsAsync<IOException>(() =>
            BatchPlaneSource.Of(channel with { Token = Guid.NewGuid() }, CancellationToken.None).RunWith(Sink.Seq<Batch>(), Sys.Materializer()));
        Assert.Contains("no such feed", e2.Message);
    }

    [Fact]
    public async Task A_data_node_nobody_listens_at_is_a_clear_error()
    {
        int port;
        using (var closed = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            closed.Start();
            port = ((System.Net.IPEndPoint)closed.LocalEndpoint).Port;
        }
        var e = await Assert.ThrowsAsync<IOException>(() =>
            BatchPlaneSource.Of(new BatchChannel($"127.0.0.1:{port}", Guid.NewGuid()), CancellationToken.None).RunWith(Sink.Seq<Batch>(), Sys.Materializer()));
        Assert.Contains($"could not reach data node 127.0.0.1:{port}'s batch plane", e.Message);
    }
}
