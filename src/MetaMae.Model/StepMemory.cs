namespace MetaMae.Model;

/// <summary>
/// A lower bound of what one training step keeps in memory, known before a tensor exists: the attention maps every
/// block saves for the backward pass (scores and their softmax, fp32), which grow with the square of the tokens. A
/// step whose bound exceeds the machine's memory cannot run; it is refused with this figure instead of aborting
/// inside libtorch.
/// </summary>
public static class StepMemory
{
    /// <summary>Bytes of the saved attention maps of one step over <paramref name="batch"/> samples (encoder on the visible tokens, decoder on all).</summary>
    public static long AttentionBytes(ModelConfig config, int batch)
    {
        long tokens = config.Input.NumTokens;
        long visible = Math.Max(1, (long)Math.Round(tokens * (1 - config.Options.MaskRatio)));
        double perSample = config.Size.EncoderDepth * config.Size.EncoderHeads * (double)visible * visible
                           + config.Size.DecoderDepth * config.Size.DecoderHeads * (double)tokens * tokens;
        double bytes = perSample * batch * sizeof(float) * 2; // scores and softmax probabilities
        return bytes >= long.MaxValue ? long.MaxValue : (long)bytes;
    }
}
