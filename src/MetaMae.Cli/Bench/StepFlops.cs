using System.Diagnostics;
using MetaMae.Model;
using static TorchSharp.torch;

namespace MetaMae.Cli.Bench;

/// <summary>
/// An analytic count of the floating-point operations of one training step, to set a measured step time against the
/// machine's limit. Counted: every matrix product (a multiply-add is 2 FLOPs) of the patch embedding, the encoder
/// blocks on the K + 1 kept tokens (qkv, the two attention products, projection, MLP), the decoder embedding, the
/// decoder blocks on all L + 1 tokens, the head (and the weight-tied logits for tokens; image+text: patches and tokens
/// each through their own). The inner decode's last block runs only the support rows' queries, a saving not counted.
/// Not counted: norms, softmax, GELU, losses, AdamW, the projector (all linear in the activations, a few percent at
/// these sizes). A backward pass
/// is counted as twice its forward (gradients with respect to activations and to weights). So: MAE = 3 x forward.
/// MetaMAE, second order = 3 x encoder + 9 x decoder (inner decode, its gradient on the latent, outer decode, the
/// outer backward, and the backward through the inner decode and its gradient: 1 + 1 + 1 + 2 + 4); first order =
/// 3 x encoder + 5 x decoder (the inner gradient is a constant, so the inner decode is not differentiated again).
/// </summary>
public static class StepFlops
{
    public static (double Encoder, double Decoder) Forward(ModelConfig config, int batch)
    {
        var (input, size) = (config.Input, config.Size);
        double l = input.NumTokens, k = Masking.Segments(input, config.Options).Sum(s => Masking.KeptTokens(s.Length, s.Ratio));
        double d = size.EncoderDim, e = size.DecoderDim, m = size.MlpRatio;
        double patches = input.Kind == TokenizerKind.Tokens ? 0 : input.ImageTokens, texts = l - patches;
        double Block(double tokens, double width) => tokens * width * width * (2 * 3 + 2 + 2 * 2 * m) + 2 * 2 * tokens * tokens * width;
        double encoder = 2 * patches * input.PatchDim * d + size.EncoderDepth * Block(k + 1, d);
        double head = 2 * patches * e * input.PatchDim + 2 * texts * (e * d + d * input.Vocab);
        double decoder = 2 * (k + 1) * d * e + size.DecoderDepth * Block(l + 1, e) + head;
        return (batch * encoder, batch * decoder);
    }

    public static double Step(ModelConfig config, int batch)
    {
        var (encoder, decoder) = Forward(config, batch);
        return config.Options.Objective == Objective.Mae ? 3 * (encoder + decoder)
            : 3 * encoder + (config.Options.FirstOrder ? 5 : 9) * decoder;
    }

    /// <summary>
    /// The machine's sustained rate for <paramref name="dtype"/> matrix products at the current thread count: a
    /// 1536 x 1536 matmul repeated for about a second, after a warm-up (GFLOP/s).
    /// </summary>
    public static double PeakGflops(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        const int n = 1536;
        var a = randn(n, n).to(dtype);
        var b = randn(n, n).to(dtype);
        for (int i = 0; i < 3; i++) matmul(a, b).Dispose();
        int reps = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed.TotalSeconds < 1 || reps < 5)
        {
            matmul(a, b).Dispose();
            reps++;
        }
        return 2.0 * n * n * n * reps / clock.Elapsed.TotalSeconds / 1e9;
    }
}
