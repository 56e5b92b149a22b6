using Akka.Streams;
using Akka.Streams.Dsl;
using Akka.Streams.TestKit;
using MetaMae.Data.Pipeline;
using MetaMae.Protocol;

namespace MetaMae.Data.Tests;

public class PipelineTests : Akka.TestKit.Xunit2.TestKit
{
    private readonly IMaterializer materializer;

    public PipelineTests() => materializer = Sys.Materializer();

    private static readonly DatasetSpec Spec = new("numbers", "test", InputKind.Series1d, [1, 4], [1], 0, 4, 2,
        Metric.Accuracy, Role.PretrainAndTransfer, "all", "in memory");

    /// <summary>Record i decodes to [i, i, i, i] with label i % 2; records in <paramref name="bad"/> fail; each read is counted.</summary>
    private sealed class Numbers(int count, ISet<int>? bad = null, int delayMs = 0) : IDataset
    {
        public int Reads;
        public DatasetSpec Spec => PipelineTests.Spec;
        public int Count => count;
        public string Describe(int index) => $"numbers.csv:{index + 1}";

        public Sample Read(int index, DecodeContext context)
        {
            Interlocked.Increment(ref Reads);
            if (delayMs > 0) Thread.Sleep(delayMs * (index % 3)); // uneven decode times: order must still hold
            if (bad?.Contains(index) == true) throw new BadRecordException(Describe(index), "deliberately bad");
            return Sample.Dense([index, index, index, index], index % 2);
        }
    }

    private List<Batch> Run(IDataset data, PipelineSettings settings, StreamPosition? start = null, DataMetrics? metrics = null,
        List<string>? log = null) =>
        DataFlows.Batches(data, settings, start ?? StreamPosition.Start, metrics ?? new DataMetrics(), log is null ? null : log.Add)
            .RunWith(Sink.Seq<Batch>(), materializer).Result.ToList();

    private static IEnumerable<float> FirstValues(IEnumerable<Batch> batches) =>
        batches.SelectMany(b => Enumerable.Range(0, b.Size).Select(i => b.Values![i * 4]));

    [Fact]
    public void Order_is_a_pure_function_of_seed_and_epoch_whatever_the_parallelism()
    {
        var settings = new PipelineSettings { BatchSize = 10, Seed = 5, Epochs = 2, Parallelism = 1 };
        var serial = FirstValues(Run(new Numbers(50), settings)).ToList();
        var parallel = FirstValues(Run(new Numbers(50, delayMs: 2), settings with { Parallelism = 4 })).ToList();
        Assert.Equal(serial, parallel);
        Assert.Equal(100, serial.Count);
        Assert.Equal(Enumerable.Range(0, 50).Select(i => (float)i), serial.Take(50).Order()); // each record once per epoch
        Assert.NotEqual(serial.Take(50), serial.Skip(50));                                     // reshuffled next epoch
        var otherSeed = FirstValues(Run(new Numbers(50), settings with { Seed = 6 })).ToList();
        Assert.NotEqual(serial, otherSeed);
    }

    [Fact]
    public void A_stream_started_at_a_batch_end_continues_exactly_where_the_first_left_off()
    {
        var settings = new PipelineSettings { BatchSize = 7, Seed = 1, Epochs = 3 };
        var full = Run(new Numbers(30), settings);
        var resumeAfter = full[5];
        var resumed = Run(new Numbers(30), settings, resumeAfter.End);
        Assert.Equal(FirstValues(full.Skip(6)), FirstValues(resumed));
        Assert.Equal(full.Select(b => b.End).Skip(6), resumed.Select(b => b.End));
    }

    [Theory]
    [InlineData(2, 0)]
    [InlineData(3, 0)]
    [InlineData(3, 2)]
    public void Shards_split_batches_by_global_index_and_merged_by_sequence_equal_one_stream(int shards, long startBatch)
    {
        var settings = new PipelineSettings { BatchSize = 5, Seed = 2, Epochs = 2 };
        var start = new StreamPosition(0, startBatch * 5);
        var whole = Run(new Numbers(40), settings, start);
        var parts = Enumerable.Range(0, shards).Select(k => Run(new Numbers(40), settings with { ShardIndex = k, ShardCount = shards }, start)).ToList();
        Assert.All(parts, (p, k) => Assert.All(p, b => Assert.Equal(k, b.Sequence % shards)));
        var merged = parts.SelectMany(p => p).OrderBy(b => b.Sequence).ToList();
        Assert.Equal(whole.Select(b => b.Sequence), merged.Select(b => b.Sequence));
        Assert.Equal(FirstValues(whole), FirstValues(merged));
        Assert.Equal(whole.Select(b => b.End), merged.Select(b => b.End));
    }

    [Theory]
    [InlineData(2, 10)]
    [InlineData(3, 10)] // slices of 3, 3 and 4
    [InlineData(4, 6)]
    public void Slices_of_each_batch_for_replicas_put_together_equal_the_whole_batch_with_its_end(int slices, int batch)
    {
        var settings = new PipelineSettings { BatchSize = batch, Seed = 3, Epochs = 2 };
        var whole = Run(new Numbers(47), settings);
        var parts = Enumerable.Range(0, slices).Select(r => Run(new Numbers(47), settings with { SliceIndex = r, SliceCount = slices })).ToList();
        Assert.All(parts, p => Assert.Equal(whole.Count, p.Count));
        for (int i = 0; i < whole.Count; i++)
        {
            Assert.Equal(FirstValues([whole[i]]), parts.SelectMany(p => FirstValues([p[i]])));
            Assert.All(parts, p => Assert.Equal(whole[i].End, p[i].End)); // every replica ends at the global batch's end
            Assert.All(parts, p => Assert.Equal(whole[i].Sequence, p[i].Sequence));
        }
        Assert.Equal(batch, parts.Sum(p => p[0].Size));
    }

    [Fact]
    public void A_start_off_the_batch_grid_makes_whole_batches_from_there_and_the_grid_again_next_epoch()
    {
        // A group re-formed with another global batch resumes at a position that is a multiple of the old size only.
        var settings = new PipelineSettings { BatchSize = 8, Seed = 4, Epochs = 2, Shuffle = false };
        var batches = Run(new Numbers(30), settings, new StreamPosition(0, 6));
        var firstEpoch = batches.TakeWhile(b => b.End.Epoch == 0).ToList();
        Assert.Equal(new float[] { 6, 14 }, firstEpoch.Select(b => b.Values![0]));    // [6, 14) and [14, 22)
        Assert.Equal(new StreamPosition(1, 0), batches[2].End);                      // [22, 30) ends the epoch
        Assert.Equal(new float[] { 0, 8, 16 }, batches.Skip(3).Select(b => b.Values![0]));
        Assert.Equal(batches.Select(b => b.Sequence).Distinct().Count(), batches.Count);
        Assert.Equal(batches.Select(b => b.Sequence).Order(), batches.Select(b => b.Sequence));
    }

    [Fact]
    public void Bad_records_are_counted_logged_and_skipped()
    {
        var log = new List<string>();
        var metrics = new DataMetrics();
        var batches = Run(new Numbers(100, new HashSet<int> { 3, 50 }), new PipelineSettings { BatchSize = 10, Epochs = 1, Shuffle = false }, metrics: metrics, log: log);
        var values = FirstValues(batches).ToList();
        Assert.Equal(98, values.Count);
        Assert.DoesNotContain(3f, values);
        Assert.Equal(2, metrics.Snapshot().BadRecords);
        Assert.Contains(log, l => l.Contains("numbers.csv:4") && l.Contains("deliberately bad"));
        Assert.Equal(new float[] { 0, 1, 2, 4 }, values.Take(4));
    }

    [Fact]
    public void Too_many_bad_records_fail_the_stream_with_a_message_saying_so()
    {
        var bad = Enumerable.Range(0, 200).Where(i => i % 4 == 0).ToHashSet();
        var settings = new PipelineSettings { BatchSize = 10, Epochs = 1, MaxBadFraction = 0.1, MinRecordsForBadCheck = 50 };
        var e = Assert.Throws<AggregateException>(() => Run(new Numbers(200, bad), settings));
        var inner = Assert.IsType<TooManyBadRecordsException>(e.InnerException);
        Assert.Contains("numbers", inner.Message);
        Assert.Contains("over the configured limit of 10.0%", inner.Message);
    }

    [Fact]
    public void Collated_batches_are_fixed_ranges_of_the_order_with_labels_end_positions_and_global_indices()
    {
        var batches = Run(new Numbers(10), new PipelineSettings { BatchSize = 4, Epochs = 2, Shuffle = false });
        Assert.Equal(new[] { 4, 4, 4, 4 }, batches.Select(b => b.Size)); // the partial range of each epoch is dropped
        Assert.Equal(new long[] { 0, 1, 2, 3 }, batches.Select(b => b.Sequence));
        Assert.Equal(new[] { 1, 4 }, batches[0].SampleShape);
        Assert.Equal(new float[] { 0, 0, 0, 0, 1, 1, 1, 1 }, batches[0].Values![..8]);
        Assert.Equal(new float[] { 0, 1, 0, 1 }, batches[0].Labels);
        Assert.Equal(new StreamPosition(0, 4), batches[0].End);
        Assert.Equal(new StreamPosition(1, 0), batches[1].End);
        Assert.Equal(new StreamPosition(2, 0), batches[3].End);
    }

    [Fact]
    public void Bad_records_make_their_batch_smaller_and_never_shift_later_batches()
    {
        var clean = Run(new Numbers(40), new PipelineSettings { BatchSize = 8, Epochs = 1, Seed = 3 });
        var dirty = Run(new Numbers(40, new HashSet<int> { (int)clean[1].Values![0] }), new PipelineSettings { BatchSize = 8, Epochs = 1, Seed = 3 });
        Assert.Equal(new[] { 8, 7, 8, 8, 8 }, dirty.Select(b => b.Size));
        Assert.Equal(FirstValues([clean[2], clean[3], clean[4]]), FirstValues([dirty[2], dirty[3], dirty[4]]));
        Assert.Equal(clean.Select(b => b.End), dirty.Select(b => b.End));
    }

    [Fact]
    public void A_slow_consumer_holds_the_producer_to_a_bounded_number_of_reads()
    {
        var data = new Numbers(1_000_000);
        var settings = new PipelineSettings { BatchSize = 16, Parallelism = 4, BufferBatches = 2 };
        var probe = DataFlows.Batches(data, settings, StreamPosition.Start, new DataMetrics())
            .RunWith(this.SinkProbe<Batch>(), materializer);
        probe.Request(1);
        probe.ExpectNext(TimeSpan.FromSeconds(5));
        Thread.Sleep(500);
        var afterOne = Volatile.Read(ref data.Reads);
        Thread.Sleep(500);
        Assert.Equal(afterOne, Volatile.Read(ref data.Reads)); // nothing more is read while nobody asks
        // Bound: the batch taken, the buffered batches, one being grouped, decodes in flight, stage buffers.
        Assert.InRange(afterOne, 16, 16 * (1 + 2 + 1) + 4 + 16 + 16);
        probe.Request(10);
        for (int i = 0; i < 10; i++) probe.ExpectNext(TimeSpan.FromSeconds(5));
        Assert.True(Volatile.Read(ref data.Reads) > afterOne);
        probe.Cancel();
    }

    [Fact]
    public void A_fast_consumer_is_fed_as_fast_as_decoding_allows()
    {
        var probe = DataFlows.Batches(new Numbers(10_000), new PipelineSettings { BatchSize = 50, Epochs = 1 }, StreamPosition.Start, new DataMetrics())
            .RunWith(this.SinkProbe<Batch>(), materializer);
        probe.Request(1000);
        var received = 0;
        for (int i = 0; i < 200; i++) received += probe.ExpectNext(TimeSpan.FromSeconds(5)).Size;
        probe.ExpectComplete();
        Assert.Equal(10_000, received);
    }
}
