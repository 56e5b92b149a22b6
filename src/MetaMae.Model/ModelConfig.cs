namespace MetaMae.Model;

/// <summary>Which objective trains the encoder.</summary>
public enum Objective { Mae, MetaMae }

/// <summary>Arithmetic of the matrix products: fp32, or bf16 from fp32 master weights (see Layers.Amp).</summary>
public enum Precision { Fp32, Bf16 }

/// <summary>Widths and depths of encoder and decoder (METAMAE.md section 2).</summary>
public sealed record ModelSize(
    int EncoderDim, int EncoderDepth, int EncoderHeads,
    int DecoderDim, int DecoderDepth, int DecoderHeads,
    double Dropout = 0.1, int MlpRatio = 2)
{
    public void Validate()
    {
        if (EncoderDim % EncoderHeads != 0) throw new ArgumentException($"encoder width {EncoderDim} is not divisible by {EncoderHeads} heads");
        if (DecoderDim % DecoderHeads != 0) throw new ArgumentException($"decoder width {DecoderDim} is not divisible by {DecoderHeads} heads");
        if (EncoderDim % 4 != 0 || DecoderDim % 4 != 0) throw new ArgumentException("widths must be multiples of 4 (sin-cos position embeddings)");
        if (EncoderDepth < 1 || DecoderDepth < 1) throw new ArgumentException("encoder and decoder need at least one block");
        if (Dropout is < 0 or >= 1) throw new ArgumentException($"dropout must be in [0, 1), got {Dropout}");
    }
}

/// <summary>Named model sizes. <c>dabs</c> is the paper's backbone; the others fit CPU runs and tests.</summary>
public static class Presets
{
    public static readonly IReadOnlyDictionary<string, ModelSize> All = new Dictionary<string, ModelSize>(StringComparer.OrdinalIgnoreCase)
    {
        ["dabs"] = new(256, 12, 8, 128, 4, 4, 0.1),
        ["small"] = new(128, 4, 4, 64, 2, 4, 0.1),
        ["tiny"] = new(64, 2, 4, 32, 1, 2, 0.0),
    };

    public static ModelSize Get(string name) =>
        All.TryGetValue(name, out var size) ? size
        : throw new ArgumentException($"unknown preset '{name}'; known presets: {string.Join(", ", All.Keys)}");
}

/// <summary>The objective's knobs (METAMAE.md sections 3 to 5). Defaults are the paper's.</summary>
public sealed record ObjectiveOptions
{
    public Objective Objective { get; init; } = Objective.MetaMae;
    /// <summary>r: fraction of tokens removed.</summary>
    public double MaskRatio { get; init; } = 0.75;
    /// <summary>s: probability that a masked neighbour of a visible token joins the support set.</summary>
    public double SupportRatio { get; init; } = 0.1;
    /// <summary>alpha: step size of the inner gradient step on the latent.</summary>
    public double InnerLr { get; init; } = 0.5;
    /// <summary>lambda: weight of the task-contrastive loss.</summary>
    public double ContrastiveWeight { get; init; } = 1.0;
    /// <summary>Treat the inner gradient as a constant (cheaper, drops the second-order term).</summary>
    public bool FirstOrder { get; init; }
    /// <summary>NT-Xent temperature.</summary>
    public double Temperature { get; init; } = 0.5;
    /// <summary>Image+text: fraction of the text's tokens removed (<see cref="MaskRatio"/> is the image's).</summary>
    public double TextMaskRatio { get; init; } = 0.5;
    /// <summary>Image+text: the reconstruction loss is ImageLossWeight * MSE(patches) + TextLossWeight * CE(tokens).</summary>
    public double ImageLossWeight { get; init; } = 1.0;
    public double TextLossWeight { get; init; } = 1.0;
    /// <summary>
    /// Image+text: the padding id (BERT's [PAD] = 0), left out of the text's losses: captions are padded to a fixed
    /// length, and predicting padding would otherwise be most of the text loss. -1: no padding id.
    /// </summary>
    public long TextPadId { get; init; }
    /// <summary>fp32, or bf16 matrix products with fp32 master weights, optimizer state, norms, softmax and losses.</summary>
    public Precision Precision { get; init; } = Precision.Fp32;

    public void Validate()
    {
        if (MaskRatio is <= 0 or >= 1) throw new ArgumentException($"mask ratio must be in (0, 1), got {MaskRatio}");
        if (SupportRatio is < 0 or > 1) throw new ArgumentException($"support ratio must be in [0, 1], got {SupportRatio}");
        if (TextMaskRatio is <= 0 or >= 1) throw new ArgumentException($"text mask ratio must be in (0, 1), got {TextMaskRatio}");
        if (ImageLossWeight < 0 || TextLossWeight < 0 || ImageLossWeight + TextLossWeight <= 0)
            throw new ArgumentException($"loss weights must be non-negative and not both zero, got image {ImageLossWeight}, text {TextLossWeight}");
        if (Temperature <= 0) throw new ArgumentException($"temperature must be positive, got {Temperature}");
    }
}

/// <summary>Everything needed to build a model: input, size, objective.</summary>
public sealed record ModelConfig(InputSpec Input, ModelSize Size, ObjectiveOptions Options)
{
    public void Validate()
    {
        Size.Validate();
        Options.Validate();
        var segments = Masking.Segments(Input, Options);
        foreach (var s in segments)
            if (Masking.KeptTokens(s.Length, s.Ratio) < 1)
                throw new ArgumentException($"mask ratio {s.Ratio} keeps no {(segments.Count > 1 ? s.Name + " " : "")}token of {s.Length}");
    }
}
