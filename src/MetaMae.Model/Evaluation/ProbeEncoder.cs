using MetaMae.Model.Checkpoints;
using static TorchSharp.torch;

namespace MetaMae.Model.Evaluation;

/// <summary>Inputs of one split as plain arrays: float values or token ids, row-major, with their targets.</summary>
public sealed record ProbeSplit(float[]? Values, long[]? Ids, float[] Labels, int Count);

/// <summary>
/// The frozen encoder a linear probe reads: loads a checkpoint's encoder weights (verified first) and turns a split's
/// inputs into features in eval mode, batch by batch, pooled or per token. All tensor work of evaluation lives here,
/// so the evaluator actor handles only messages and plain arrays.
/// </summary>
public sealed class ProbeEncoder(ModelConfig config) : IDisposable
{
    private readonly MaskedAutoencoder model = MaskedAutoencoder.CreateForLoading(config);

    public ModelConfig Config { get; } = config;

    /// <summary>Verifies <paramref name="checkpoint"/>'s manifest and loads its encoder weights.</summary>
    public void Load(string checkpoint)
    {
        Checkpoint.Verify(checkpoint);
        Checkpoint.LoadWeights(checkpoint, model, encoderOnly: true);
    }

    public ProbeData Features(ProbeSplit split, bool perToken, int batchSize)
    {
        int dim = Config.Size.EncoderDim, tokens = Config.Input.NumTokens;
        int per = perToken ? tokens : 1;
        var features = new float[(long)split.Count * per * dim];
        model.eval();
        using (no_grad())
        {
            for (int start = 0; start < split.Count; start += batchSize)
            {
                using var scope = NewDisposeScope();
                int n = Math.Min(batchSize, split.Count - start);
                var x = Config.Input.Batch(split.Values, split.Ids, start, n);
                var f = model.Features(x, perToken).contiguous().data<float>().ToArray();
                f.CopyTo(features, (long)start * per * dim);
            }
        }
        return new ProbeData(features, split.Count, per, dim, split.Labels);
    }

    public void Dispose() => model.Dispose();
}
