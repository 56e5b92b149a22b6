namespace MetaMae.Protocol;

/// <summary>A position in a data stream's order: record <see cref="Offset"/> of epoch <see cref="Epoch"/>.</summary>
public sealed record StreamPosition(long Epoch, long Offset) : IMetaMaeMessage
{
    public static readonly StreamPosition Start = new(0, 0);

    public override string ToString() => $"epoch {Epoch} offset {Offset}";
}

/// <summary>
/// One batch as plain arrays: what crosses from data stages to the learner, locally or between nodes. Exactly one
/// of <see cref="Values"/> (float inputs, row-major (N, ...SampleShape)) and <see cref="Ids"/> (token ids) is set.
/// <see cref="Labels"/> holds one class index (or regression target) per sample, or per token when
/// <see cref="LabelsPerSample"/> &gt; 1. <see cref="End"/> is the stream position just after the batch's last
/// record: a run resumed from it sees exactly the batches it would have seen.
/// </summary>
public sealed record Batch(
    int Size,
    int[] SampleShape,
    float[]? Values,
    long[]? Ids,
    float[] Labels,
    int LabelsPerSample,
    StreamPosition End,
    long Sequence) : IMetaMaeMessage
{
    public long SampleLength => SampleShape.Aggregate(1L, (a, b) => a * b);

    public long PayloadBytes => (Values?.LongLength ?? 0) * 4 + (Ids?.LongLength ?? 0) * 8 + Labels.LongLength * 4;
}
