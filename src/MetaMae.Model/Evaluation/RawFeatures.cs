namespace MetaMae.Model.Evaluation;

/// <summary>
/// The probe's anchor row: the same linear probe on the raw input instead of an encoder's features. An encoder is worth
/// using on a data set only where it beats this. The raw features are the input itself where it is small, else a pooled
/// summary (no learning, nothing fitted on any split):
/// <list type="bullet">
/// <item>floats (images, spectrograms, sensors, tables): the flattened sample when it has at most
/// <see cref="MaxFlatDim"/> values, else each patch's mean and standard deviation per channel (for a log-mel
/// spectrogram: time-frequency pooled log-mel);</item>
/// <item>token ids: the one-hot ids flattened when length x vocabulary is at most <see cref="MaxFlatDim"/>, else the
/// sample's token frequencies (a bag of tokens); per-token tasks: each token's one-hot id.</item>
/// <item>image+text: the image's summary followed by the text's, side by side.</item>
/// </list>
/// </summary>
public static class RawFeatures
{
    public const int MaxFlatDim = 8192;

    /// <summary>How <see cref="Of"/> summarises inputs of <paramref name="input"/>, for reports.</summary>
    public static string Describe(InputSpec input, bool perToken) => input.Kind switch
    {
        TokenizerKind.ImageText => $"{Describe(input.ImagePart, false)} of the image, with {Describe(input.TextPart!, false)} of the text",
        TokenizerKind.Tokens when perToken => "one-hot token ids",
        TokenizerKind.Tokens when input.Size[0] * input.Vocab <= MaxFlatDim => "one-hot ids, flattened",
        TokenizerKind.Tokens => "token frequencies (bag of tokens)",
        _ when input.SampleLength <= MaxFlatDim => "the flattened input",
        _ => "per-patch mean and standard deviation of the input",
    };

    public static ProbeData Of(ProbeSplit split, InputSpec input, bool perToken)
    {
        int length = (int)input.SampleLength;
        if (input.Kind == TokenizerKind.ImageText) return Side(Of(split with { Ids = null }, input.ImagePart, false), Of(split with { Values = null }, input.TextPart!, false));
        if (split.Ids is { } ids) return Tokens(ids, split, input, perToken);
        var values = split.Values ?? throw new ArgumentException("a probe split has neither values nor ids");
        if (length <= MaxFlatDim) return new ProbeData(values, split.Count, 1, length, split.Labels);
        return PatchMoments(values, split, input);
    }

    private static ProbeData Tokens(long[] ids, ProbeSplit split, InputSpec input, bool perToken)
    {
        int length = input.Size[0], vocab = input.Vocab;
        if (perToken)
        {
            var oneHot = new float[(long)split.Count * length * vocab];
            for (long t = 0; t < (long)split.Count * length; t++) oneHot[t * vocab + ids[t]] = 1;
            return new ProbeData(oneHot, split.Count, length, vocab, split.Labels);
        }
        bool flat = length * vocab <= MaxFlatDim;
        int dim = flat ? length * vocab : vocab;
        var features = new float[(long)split.Count * dim];
        for (int n = 0; n < split.Count; n++)
            for (int i = 0; i < length; i++)
            {
                long id = ids[(long)n * length + i];
                if (flat) features[(long)n * dim + i * vocab + id] = 1;
                else features[(long)n * dim + id] += 1f / length;
            }
        return new ProbeData(features, split.Count, 1, dim, split.Labels);
    }

    /// <summary>Two feature sets of the same samples, concatenated per sample.</summary>
    private static ProbeData Side(ProbeData a, ProbeData b)
    {
        int dim = a.Dim + b.Dim;
        var features = new float[(long)a.Samples * dim];
        for (int n = 0; n < a.Samples; n++)
        {
            Array.Copy(a.Features, (long)n * a.Dim, features, (long)n * dim, a.Dim);
            Array.Copy(b.Features, (long)n * b.Dim, features, (long)n * dim + a.Dim, b.Dim);
        }
        return new ProbeData(features, a.Samples, 1, dim, a.Targets);
    }

    /// <summary>Per channel and patch: mean and standard deviation of the patch's values.</summary>
    private static ProbeData PatchMoments(float[] values, ProbeSplit split, InputSpec input)
    {
        int channels = input.Channels;
        var (rows, cols) = input.Grid;
        int ph = input.Kind == TokenizerKind.Patches2d ? input.Patch[0] : 1;
        int pw = input.Kind == TokenizerKind.Patches2d ? input.Patch[1] : input.Patch[0];
        int height = input.Kind == TokenizerKind.Patches2d ? input.Size[0] : 1;
        int width = input.Kind == TokenizerKind.Patches2d ? input.Size[1] : input.Size[0];
        int patches = rows * cols, dim = channels * patches * 2, sample = channels * height * width;
        var features = new float[(long)split.Count * dim];
        for (int n = 0; n < split.Count; n++)
            for (int c = 0; c < channels; c++)
                for (int r = 0; r < rows; r++)
                    for (int q = 0; q < cols; q++)
                    {
                        double sum = 0, squares = 0;
                        for (int y = r * ph; y < (r + 1) * ph; y++)
                            for (int x = q * pw; x < (q + 1) * pw; x++)
                            {
                                double v = values[(long)n * sample + ((long)c * height + y) * width + x];
                                sum += v;
                                squares += v * v;
                            }
                        int count = ph * pw;
                        double mean = sum / count;
                        long at = (long)n * dim + ((long)c * patches + r * cols + q) * 2;
                        features[at] = (float)mean;
                        features[at + 1] = (float)Math.Sqrt(Math.Max(0, squares / count - mean * mean));
                    }
        return new ProbeData(features, split.Count, 1, dim, split.Labels);
    }
}
