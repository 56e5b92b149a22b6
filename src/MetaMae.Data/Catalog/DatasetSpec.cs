namespace MetaMae.Data;

/// <summary>How samples are tokenized (mirrors the model's tokenizers).</summary>
public enum InputKind { Image2d, Series1d, Tokens, ImageText }

/// <summary>The metric a transfer set is scored with (DABS).</summary>
public enum Metric { Accuracy, BinaryAccuracy, WeightedF1, Spearman, PerTokenAccuracy, Auroc, Pearson }

/// <summary>Per-feature (or single) mean and standard deviation of a data set's pretraining split, and how many samples gave them.</summary>
public sealed record InputStatistics(float[] Mean, float[] Std, int Samples);

/// <summary>What a data set is used for.</summary>
public enum Role { Pretrain, Transfer, PretrainAndTransfer }

/// <summary>
/// Everything the pipeline and the model need to know of a data set: modality, shape, patch, vocabulary, batch,
/// classes, metric, role, splits, and the on-disk layout the reader expects (quoted in errors).
/// </summary>
public sealed record DatasetSpec(
    string Name,
    string Modality,
    InputKind Kind,
    int[] Shape,
    int[] Patch,
    int Vocab,
    int BatchSize,
    int Classes,
    Metric Metric,
    Role Role,
    string Splits,
    string Layout,
    string Origin = "DABS",
    int TextLength = 0)
{
    /// <summary>
    /// For one's own data: the standardisation the reader applies (per feature for a table, one value for a
    /// spectrogram), computed on the pretraining split only; null where values are used as read.
    /// </summary>
    public InputStatistics? Statistics { get; init; }

    /// <summary>Elements of one sample: C*H*W, C*T or L.</summary>
    public int SampleLength => Shape.Aggregate(1, (a, b) => a * b);

    public bool IsTokens => Kind == InputKind.Tokens;

    /// <summary>Label values per sample: 1, or the sequence length for per-token tasks.</summary>
    public int LabelsPerSample => Metric == Metric.PerTokenAccuracy ? Shape[^1] : 1;

    public bool IsRegression => Metric is Metric.Spearman or Metric.Pearson;

    /// <summary>
    /// The masking ratio r pretraining uses unless told otherwise, the one definition of it: 0.85 for multichannel
    /// sensor series (the paper's PAMAP2 setting), 0.5 for tokens and single-row tabular data, MAE's 0.75 otherwise.
    /// </summary>
    public double DefaultMaskRatio => Kind switch
    {
        InputKind.Tokens => 0.5,
        InputKind.Series1d when Shape[0] == 1 => 0.5,
        InputKind.Series1d => 0.85,
        _ => 0.75,
    };

    public void CheckShape(Sample sample, string where)
    {
        if (Kind == InputKind.ImageText && sample.Ids?.Length != TextLength)
            throw new BadRecordException(where, $"has {sample.Ids?.Length ?? 0} text tokens, expected {TextLength}");
        var length = IsTokens ? sample.Ids?.Length : sample.Values?.Length;
        if (length != SampleLength)
            throw new BadRecordException(where, $"decoded to {length?.ToString() ?? "nothing"} values, expected {SampleLength} ({string.Join("x", Shape)})");
        if (sample.Labels.Length != LabelsPerSample)
            throw new BadRecordException(where, $"has {sample.Labels.Length} labels, expected {LabelsPerSample}");
        if (sample.Ids is not null)
        {
            foreach (var id in sample.Ids)
                if (id < 0 || id >= Vocab) throw new BadRecordException(where, $"token id {id} is outside the vocabulary of {Vocab}");
        }
        if (sample.Values is not null)
        {
            foreach (var v in sample.Values)
                if (!float.IsFinite(v)) throw new BadRecordException(where, "contains NaN or infinite values");
        }
    }

    public override string ToString() => $"{Name} ({Modality}, {string.Join("x", Shape)}, {(Classes > 0 ? $"{Classes} classes" : "regression")}, {Metric})";
}
