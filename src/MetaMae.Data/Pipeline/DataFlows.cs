using Akka;
using Akka.Streams;
using Akka.Streams.Dsl;
using MetaMae.Protocol;

namespace MetaMae.Data.Pipeline;

/// <summary>How a stream reads a data set.</summary>
public sealed record PipelineSettings
{
    public required int BatchSize { get; init; }
    public long Seed { get; init; }
    /// <summary>Records decoded at once; default one per core.</summary>
    public int Parallelism { get; init; } = Environment.ProcessorCount;
    /// <summary>This stream makes the batches whose global index i has i mod ShardCount == ShardIndex.</summary>
    public int ShardIndex { get; init; }
    public int ShardCount { get; init; } = 1;
    /// <summary>
    /// Of each batch, this stream makes only slice SliceIndex of SliceCount: positions [B*s/S, B*(s+1)/S) of the
    /// batch's range, so S data-parallel replicas each train their part of one global batch of B.
    /// </summary>
    public int SliceIndex { get; init; }
    public int SliceCount { get; init; } = 1;

    /// <summary>The records of this stream's slice of each batch.</summary>
    public int SliceSize => (int)((long)BatchSize * (SliceIndex + 1) / SliceCount - (long)BatchSize * SliceIndex / SliceCount);
    /// <summary>Shuffle each epoch (a seeded permutation per epoch); false reads in listing order.</summary>
    public bool Shuffle { get; init; } = true;
    /// <summary>Stop after this many epochs; null streams forever.</summary>
    public long? Epochs { get; init; }
    /// <summary>Ready batches held ahead of the consumer.</summary>
    public int BufferBatches { get; init; } = 2;
    /// <summary>The run fails once more than this fraction of records read were bad (after <see cref="MinRecordsForBadCheck"/>).</summary>
    public double MaxBadFraction { get; init; } = 0.05;
    public int MinRecordsForBadCheck { get; init; } = 100;
    /// <summary>Values beyond +-this are taken for corruption: the record is counted as bad (see <see cref="ValueBounds"/>).</summary>
    public double MaxAbsValue { get; init; } = ValueBounds.DefaultMaxAbs;
    /// <summary>Individual bad records logged before only counting them.</summary>
    public int BadRecordsLogged { get; init; } = 20;

    public void Validate()
    {
        if (BatchSize < 1) throw new ArgumentException($"batch size must be at least 1, got {BatchSize}");
        if (Parallelism < 1) throw new ArgumentException($"parallelism must be at least 1, got {Parallelism}");
        if (ShardCount < 1 || ShardIndex < 0 || ShardIndex >= ShardCount)
            throw new ArgumentException($"shard {ShardIndex} of {ShardCount} is not valid");
        if (SliceCount < 1 || SliceIndex < 0 || SliceIndex >= SliceCount || SliceCount > BatchSize)
            throw new ArgumentException($"slice {SliceIndex} of {SliceCount} of a batch of {BatchSize} is not valid");
        if (!(MaxAbsValue > 0)) throw new ArgumentException($"max abs value must be positive, got {MaxAbsValue}");
        if (MaxBadFraction is < 0 or > 1) throw new ArgumentException($"max bad fraction must be in [0, 1], got {MaxBadFraction}");
    }
}

/// <summary>
/// A record scheduled for reading: its place in the stream's order, its index in the data set, its batch, and where
/// the batch after it starts.
/// </summary>
public readonly record struct OrderedRecord(StreamPosition Position, int Index, long BatchIndex = 0, StreamPosition? BatchEnd = null);

/// <summary>A record after decoding: the sample, or why it could not be read.</summary>
public readonly record struct Decoded(OrderedRecord Record, Sample? Sample, BadRecordException? Error);

/// <summary>Raised when bad records exceed the configured fraction.</summary>
public sealed class TooManyBadRecordsException(string dataset, long bad, long read, double limit)
    : Exception($"{dataset}: {bad} of {read} records ({100.0 * bad / read:F1}%) could not be read, over the configured limit of {100 * limit:F1}% " +
                "(max_bad_fraction); see the log for which records and why");

/// <summary>
/// Reusable Akka.Streams pieces that turn a data set into batches: positions (a pure function of seed, epoch and
/// offset) -> shard -> parallel decode (order kept) -> group a batch's positions -> drop its bad records -> collate
/// into plain arrays -> bounded buffer. Back-pressure runs end to end: nothing is decoded faster than batches are taken.
/// <para>
/// Batches are fixed ranges of the epoch's order: batch b of an epoch holds positions [b*B, (b+1)*B), and a last
/// partial range is dropped (drop_last), so batch i of the whole stream (i = epoch * batchesPerEpoch + b) is the same
/// whichever node makes it. That is what lets shards split work by batch index and a learner merging them by
/// <see cref="Batch.Sequence"/> see exactly the batches one stream makes; bad records only make their batch smaller.
/// </para>
/// </summary>
public static class DataFlows
{
    /// <summary>The permutation of epoch <paramref name="epoch"/>: identical for the same (seed, epoch, count).</summary>
    public static int[] EpochOrder(int count, long seed, long epoch, bool shuffle) =>
        shuffle ? Readers.Layout.Shuffled(count, unchecked((long)DecodeContext.Mix(seed, epoch, 0x0dde))) : Enumerable.Range(0, count).ToArray();

    /// <summary>Full batches per epoch (the partial remainder is dropped).</summary>
    public static long BatchesPerEpoch(int count, int batchSize) => count / batchSize;

    /// <summary>
    /// (epoch, offset) -> record index and batch, from <paramref name="start"/> onwards. Batches are the ranges
    /// [start + k*B, start + (k+1)*B) of the start's epoch and [k*B, (k+1)*B) of later ones, each range that fits in
    /// the epoch (a start off the B grid happens when a data-parallel group re-forms with another global batch).
    /// </summary>
    public static IEnumerable<OrderedRecord> Order(int count, PipelineSettings settings, StreamPosition start)
    {
        int size = settings.BatchSize;
        long perEpoch = BatchesPerEpoch(count, size);
        if (perEpoch == 0) yield break;
        long sliceFrom = (long)size * settings.SliceIndex / settings.SliceCount, sliceTo = (long)size * (settings.SliceIndex + 1) / settings.SliceCount;
        for (long epoch = start.Epoch; settings.Epochs is not { } n || epoch < n; epoch++)
        {
            var order = EpochOrder(count, settings.Seed, epoch, settings.Shuffle);
            long first = epoch == start.Epoch ? start.Offset : 0, phase = first % size;
            for (long from = first; from + size <= count; from += size)
            {
                long batch = epoch * perEpoch + (from - phase) / size;
                var end = from + 2L * size <= count ? new StreamPosition(epoch, from + size) : new StreamPosition(epoch + 1, 0);
                for (long offset = from + sliceFrom; offset < from + sliceTo; offset++)
                    yield return new OrderedRecord(new StreamPosition(epoch, offset), order[offset], batch, end);
            }
        }
    }

    public static Source<OrderedRecord, NotUsed> Positions(int count, PipelineSettings settings, StreamPosition start) =>
        Source.FromEnumerator(() => Order(count, settings, start).GetEnumerator()).Named("positions");

    /// <summary>Keeps the records of batches i with i mod <paramref name="count"/> == <paramref name="index"/>.</summary>
    public static Flow<OrderedRecord, OrderedRecord, NotUsed> Shard(int index, int count) =>
        Flow.Create<OrderedRecord>().Where(r => count == 1 || r.BatchIndex % count == index).Named($"shard-{index}-of-{count}");

    /// <summary>Decodes records on the thread pool, <paramref name="parallelism"/> at a time, emitting in input order.</summary>
    public static Flow<OrderedRecord, Decoded, NotUsed> Decode(IDataset dataset, long seed, bool training, int parallelism, DataMetrics metrics,
        double maxAbsValue = ValueBounds.DefaultMaxAbs) =>
        Flow.Create<OrderedRecord>().SelectAsync(parallelism, r => Task.Run(() =>
        {
            metrics.Started();
            try
            {
                var sample = ValueBounds.Check(dataset.Read(r.Index, new DecodeContext(seed, r.Position.Epoch, r.Index, training)),
                    maxAbsValue, dataset.Describe(r.Index));
                metrics.Decoded(sample.Bytes);
                return new Decoded(r, sample, null);
            }
            catch (BadRecordException e)
            {
                return new Decoded(r, null, e);
            }
        })).Named("decode");

    /// <summary>Counts and logs one bad record; fails the stream once bad records exceed the configured fraction.</summary>
    private static void CountBad(string dataset, Decoded d, PipelineSettings settings, DataMetrics metrics, Action<string>? log)
    {
        var bad = metrics.Bad();
        if (bad <= settings.BadRecordsLogged)
            log?.Invoke($"skipped bad record {d.Error!.Where}: {d.Error.Reason}");
        else if (bad % 1000 == 0)
            log?.Invoke($"{bad} bad records skipped so far in {dataset}");
        var snap = metrics.Snapshot();
        if (snap.RecordsRead >= settings.MinRecordsForBadCheck && snap.BadFraction > settings.MaxBadFraction)
            throw new TooManyBadRecordsException(dataset, snap.BadRecords, snap.RecordsRead, settings.MaxBadFraction);
    }

    /// <summary>
    /// Groups each batch's decoded positions (a batch's positions arrive together and in order), drops and counts
    /// its bad records and collates the rest into a <see cref="Batch"/> numbered by its global index.
    /// </summary>
    public static Flow<Decoded, Batch, NotUsed> Collate(DatasetSpec spec, PipelineSettings settings, DataMetrics metrics,
        Action<string>? log = null) =>
        Flow.Create<Decoded>().Grouped(settings.SliceSize).Select(grouped =>
        {
            var group = grouped.ToList();
            var index = group[0].Record.BatchIndex;
            FailPoints.Hit("data.batch", index);
            var good = new List<Decoded>(group.Count);
            foreach (var d in group)
            {
                if (d.Error is null) good.Add(d);
                else CountBad(spec.Name, d, settings, metrics, log);
            }
            var batch = CollateGroup(spec, good, group[^1].Record.BatchEnd!, index);
            metrics.Batched(group.Count);
            return batch;
        }).Named("collate");

    /// <summary>
    /// One batch of plain arrays from its good records; <paramref name="end"/> is where the next batch starts. A batch
    /// whose records were all bad has size 0 and still carries its end, so consumers advance past it.
    /// </summary>
    public static Batch CollateGroup(DatasetSpec spec, IReadOnlyList<Decoded> group, StreamPosition end, long sequence)
    {
        int n = group.Count, labelsPer = spec.LabelsPerSample;
        var first = n > 0 ? group[0].Sample : null;
        float[]? values = first is null ? (spec.IsTokens ? null : []) : first.Values is null ? null : new float[(long)n * first.Values.Length];
        long[]? ids = first is null ? (spec.IsTokens ? [] : null) : first.Ids is null ? null : new long[(long)n * first.Ids.Length];
        var labels = new float[n * labelsPer];
        for (int i = 0; i < n; i++)
        {
            var s = group[i].Sample!;
            if (values is not null) s.Values!.CopyTo(values, (long)i * s.Values!.Length);
            if (ids is not null) s.Ids!.CopyTo(ids, (long)i * s.Ids!.Length);
            s.Labels.CopyTo(labels, i * labelsPer);
        }
        return new Batch(n, spec.Shape, values, ids, labels, labelsPer, end, sequence);
    }

    /// <summary>The whole pipeline for one data set, starting at <paramref name="start"/> (for exact resume).</summary>
    public static Source<Batch, NotUsed> Batches(IDataset dataset, PipelineSettings settings, StreamPosition start, DataMetrics metrics,
        Action<string>? log = null, bool training = true)
    {
        settings.Validate();
        if (dataset.Count == 0) throw new InvalidDataException($"data set {dataset.Spec.Name} has no records for this split");
        if (dataset.Count < settings.BatchSize)
            throw new InvalidDataException($"data set {dataset.Spec.Name} has {dataset.Count} records, fewer than one batch of {settings.BatchSize}");
        return Positions(dataset.Count, settings, start)
            .Via(Shard(settings.ShardIndex, settings.ShardCount))
            .Via(Decode(dataset, settings.Seed, training, settings.Parallelism, metrics, settings.MaxAbsValue))
            .Via(Collate(dataset.Spec, settings, metrics, log))
            .Buffer(settings.BufferBatches, OverflowStrategy.Backpressure)
            .Named($"batches-{dataset.Spec.Name}");
    }
}
