using MetaMae.Model.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MetaMae.Model;

/// <summary>
/// What the encoder returns for a masked batch. <see cref="Cuts"/> (when the model cuts, see
/// <see cref="MaskedAutoencoder.CutEncoder"/>): where the graph was cut for a backward pass in stages.
/// </summary>
public sealed record EncoderOutput(Tensor Latent, Tensor Mask, Tensor IdsRestore, IReadOnlyList<GraphCut>? Cuts = null) : IDisposable
{
    public void Dispose()
    {
        Latent.Dispose();
        Mask.Dispose();
        IdsRestore.Dispose();
        foreach (var cut in Cuts ?? [])
        {
            cut.Output.Dispose();
            cut.Leaf.Dispose();
        }
    }
}

/// <summary>
/// A place where the forward pass was cut: <see cref="Output"/> is what the layers before computed; the layers after
/// read <see cref="Leaf"/>, the same values detached as a leaf of their own graph. Its gradient, once the later part's
/// backward pass has run, is what the earlier part's backward pass starts from.
/// </summary>
public sealed record GraphCut(Tensor Output, Tensor Leaf);

/// <summary>
/// One stage of a backward pass taken in stages, last layers first: back-propagate into <see cref="From"/> (null: the
/// loss itself) the gradient the previous stage left at its leaf, reaching <see cref="Parameters"/> and this stage's
/// own <see cref="Leaf"/> (null: the last stage). A parameter used by several stages (a tied embedding) is listed in
/// the last of them; its gradient accumulates over the stages and is complete after that one.
/// </summary>
public sealed record BackwardStage(IReadOnlyList<Parameter> Parameters, Tensor? From, Tensor? Leaf);

/// <summary>
/// The masked auto-encoder shared by MAE and MetaMAE (METAMAE.md sections 1 to 3, and the projector of section
/// 5 when the objective is MetaMAE). Field names are the reference's, so state-dict keys match PyTorch's.
/// </summary>
public sealed class MaskedAutoencoder : nn.Module
{
    private readonly PatchEmbed patch_embed;
    /// <summary>Image+text only: the text's token embedding (the image's patches go through patch_embed).</summary>
    private readonly PatchEmbed? text_embed;
    private readonly Parameter cls_token;
    private readonly Tensor pos_embed;
    private readonly GeneratorDropout dropout;
    private readonly ModuleList<Block> encoder;
    private readonly LayerNorm norm_enc;
    private readonly Linear decoder_embed;
    private readonly Parameter mask_token;
    private readonly Tensor decoder_pos_embed;
    private readonly ModuleList<Block> decoder;
    private readonly LayerNorm norm_dec;
    private readonly Linear decoder_head;
    /// <summary>Image+text only: decoder width to the text embedding's, for logits tied to text_embed.</summary>
    private readonly Linear? decoder_head_text;
    private readonly Sequential? projector;
    private readonly ScalarType? compute;

    public ModelConfig Config { get; }

    /// <summary>
    /// The generator dropout draws from (null: libtorch's global one). The learner sets its checkpointed generator
    /// here so that training is reproducible step for step.
    /// </summary>
    public Generator? DropoutGenerator { get; set; }

    /// <summary>The data-parallel group this replica trains in: its projector's BatchNorm uses the group's statistics.</summary>
    public Distributed.ICollective Collective { get; set; } = Distributed.SoloCollective.Instance;

    /// <summary>
    /// Cut the forward graph before each encoder block after the first and after the final norm
    /// (<see cref="EncoderOutput.Cuts"/>), so the backward pass can be taken part by part
    /// (<see cref="BackwardStages"/>) and a replica group reduces the last layers' gradients while the earlier ones are
    /// still being computed. The values computed are the same.
    /// </summary>
    public bool CutEncoder { get; set; }

    public InputSpec Input => Config.Input;

    private static readonly Lock InitLock = new();

    /// <summary>
    /// Builds a model whose initial weights depend only on <paramref name="seed"/>: initialisation draws from
    /// libtorch's global generator, so it is seeded and done under a lock no other model construction can interleave with.
    /// </summary>
    public static MaskedAutoencoder Create(ModelConfig config, long seed)
    {
        lock (InitLock)
        {
            random.manual_seed(seed);
            return new MaskedAutoencoder(config);
        }
    }

    /// <summary>A model with weights to be loaded (from a checkpoint): built under the same lock, any seed.</summary>
    public static MaskedAutoencoder CreateForLoading(ModelConfig config) => Create(config, 0);

    public MaskedAutoencoder(ModelConfig config) : base("MaskedAutoencoder")
    {
        config.Validate();
        Config = config;
        var (input, size) = (config.Input, config.Size);
        int d = size.EncoderDim, e = size.DecoderDim;
        compute = Amp.ComputeType(config.Options.Precision);

        patch_embed = new PatchEmbed("patch_embed", input.ImagePart, d);
        if (input.TextPart is { } text) text_embed = new PatchEmbed("text_embed", text, d);
        cls_token = new Parameter(zeros(1, 1, d));
        pos_embed = PositionEmbedding.For(input, d);
        dropout = new GeneratorDropout("dropout", size.Dropout, () => DropoutGenerator);
        // The encoder is differentiated once, so it may use the fused attention kernel.
        encoder = new ModuleList<Block>(Enumerable.Range(0, size.EncoderDepth)
            .Select(i => new Block($"encoder.{i}", d, size.EncoderHeads, size.MlpRatio, size.Dropout, fusedAttention: true, () => DropoutGenerator, compute)).ToArray());
        norm_enc = nn.LayerNorm(d);

        decoder_embed = nn.Linear(d, e);
        mask_token = new Parameter(zeros(1, 1, e));
        decoder_pos_embed = PositionEmbedding.For(input, e);
        // No dropout in the decoder; its attention is chosen per pass (see Decode).
        decoder = new ModuleList<Block>(Enumerable.Range(0, size.DecoderDepth)
            .Select(i => new Block($"decoder.{i}", e, size.DecoderHeads, size.MlpRatio, 0.0, fusedAttention: true, () => DropoutGenerator, compute)).ToArray());
        norm_dec = nn.LayerNorm(e);
        decoder_head = nn.Linear(e, input.Kind == TokenizerKind.Tokens ? d : input.PatchDim);
        if (input.Kind == TokenizerKind.ImageText) decoder_head_text = nn.Linear(e, d);

        RegisterComponents();
        InitializeWeights();
        // Built after the encoder and decoder are initialised (as the reference builds it after its init), so its
        // default initialisation draws come last: MAE and MetaMAE at one seed start from the same encoder and decoder.
        if (config.Options.Objective == Objective.MetaMae)
        {
            projector = nn.Sequential(
                ("0", nn.Linear(d, 4 * d, hasBias: false)),
                ("1", nn.BatchNorm1d(4 * d)),
                ("2", nn.ReLU()),
                ("3", nn.Linear(4 * d, 128, hasBias: false)));
            register_module("projector", projector);
        }
    }

    /// <summary>
    /// As the reference: xavier-uniform for linears and the patch projection (viewed as 2-D), zero biases, unit
    /// LayerNorm, normal(0.02) CLS and mask tokens. The projector is built after this in the reference, so it keeps
    /// the framework's default initialisation.
    /// </summary>
    private void InitializeWeights()
    {
        using var _ = no_grad();
        var w = patch_embed.Weight;
        nn.init.xavier_uniform_(Input.Kind == TokenizerKind.Tokens ? w : w.view(w.shape[0], -1));
        if (text_embed is not null) nn.init.xavier_uniform_(text_embed.Weight);
        nn.init.normal_(cls_token, std: 0.02);
        nn.init.normal_(mask_token, std: 0.02);
        foreach (var (name, module) in named_modules())
        {
            if (name.StartsWith("projector", StringComparison.Ordinal)) continue;
            switch (module)
            {
                case Linear linear:
                    nn.init.xavier_uniform_(linear.weight!);
                    if (linear.bias is not null) nn.init.zeros_(linear.bias);
                    break;
                case LayerNorm norm:
                    nn.init.ones_(norm.weight!);
                    nn.init.zeros_(norm.bias!);
                    break;
            }
        }
    }

    /// <summary>x: (N, C, H, W), (N, C, T) or (N, L) ids; noise: (N, L). Latent: (N, 1 + K, D) after the final norm.</summary>
    public EncoderOutput Encode(Tensor x, Tensor noise)
    {
        using var scope = NewDisposeScope();
        var tokens = Embed(x).Plus(pos_embed[.., 1..]); // (N, L, D)
        var (kept, mask, idsRestore) = Masking.RandomMasking(tokens, noise, Masking.Segments(Input, Config.Options)); // (N, K, D)
        var cls = cls_token.Plus(pos_embed[.., ..1]).expand(kept.shape[0], -1, -1);
        var h = dropout.call(cat([cls, kept], 1));
        var cuts = CutEncoder ? new List<GraphCut>() : null;
        Tensor Cut(Tensor output)
        {
            if (cuts is null) return output;
            var leaf = output.detach().requires_grad_(true);
            cuts.Add(new GraphCut(output.MoveToOuterDisposeScope(), leaf.MoveToOuterDisposeScope()));
            return leaf;
        }
        for (int i = 0; i < encoder.Count; i++) h = encoder[i].call(i == 0 ? h : Cut(h));
        var latent = norm_enc.call(h);
        latent = cuts is null ? latent.MoveToOuterDisposeScope() : Cut(latent); // a cut's tensors are moved out already
        return new EncoderOutput(latent, mask.MoveToOuterDisposeScope(), idsRestore.MoveToOuterDisposeScope(), cuts);
    }

    /// <summary>
    /// Predictions for every token: (N, L, C*p[*q]) for patches, logits (N, V, L) for token ids; with
    /// <paramref name="rows"/> (N, S token indices) only for those tokens: (N, S, C*p[*q]) or (N, V, S). The rows'
    /// predictions are those of the full pass (every token still attends to every token), but the last block's
    /// queries, MLP, norm and head run on S rows only: the inner step reads nothing else. Pass
    /// <paramref name="differentiatedTwice"/> for the second-order inner step's decode: libtorch's fused CPU attention
    /// has no double backward, so that pass uses explicit attention; all others use the fused kernel.
    /// </summary>
    public Tensor Decode(Tensor latent, Tensor idsRestore, bool differentiatedTwice = false, Tensor? rows = null)
    {
        if (Input.Kind == TokenizerKind.ImageText) throw new InvalidOperationException("an image+text model decodes with DecodeJoint");
        using var scope = NewDisposeScope();
        var pred = Amp.Linear(decoder_head, DecodeHidden(latent, idsRestore, differentiatedTwice, rows), compute);
        if (Input.Kind == TokenizerKind.Tokens) pred = TiedLogits(pred, patch_embed);
        return Amp.Full(pred).MoveToOuterDisposeScope(); // losses in fp32
    }

    /// <summary>
    /// Image+text: patch predictions (N, Li, C*p*q) and text logits (N, V, T) from one pass of the decoder over the
    /// joint sequence; with rows, only at <paramref name="imageRows"/> (N, Si) and <paramref name="textRows"/> (N, St),
    /// indices into the joint sequence (text rows from Li on): (N, Si, C*p*q) and (N, V, St).
    /// </summary>
    public (Tensor Image, Tensor Text) DecodeJoint(Tensor latent, Tensor idsRestore, bool differentiatedTwice = false,
        Tensor? imageRows = null, Tensor? textRows = null)
    {
        if (decoder_head_text is null || text_embed is null) throw new InvalidOperationException("this model is not image+text");
        using var scope = NewDisposeScope();
        Tensor hidden;
        long split;
        if (imageRows is null || textRows is null)
        {
            hidden = DecodeHidden(latent, idsRestore, differentiatedTwice, null);
            split = Input.ImageTokens;
        }
        else
        {
            hidden = DecodeHidden(latent, idsRestore, differentiatedTwice, cat([imageRows, textRows], 1));
            split = imageRows.shape[1];
        }
        var image = Amp.Full(Amp.Linear(decoder_head, hidden[.., ..(int)split], compute));
        var text = Amp.Full(TiedLogits(Amp.Linear(decoder_head_text, hidden[.., (int)split..], compute), text_embed));
        return (image.MoveToOuterDisposeScope(), text.MoveToOuterDisposeScope());
    }

    /// <summary>The decoder's normalised output without the CLS row: (N, L, E), or (N, S, E) at <paramref name="rows"/>.</summary>
    private Tensor DecodeHidden(Tensor latent, Tensor idsRestore, bool differentiatedTwice, Tensor? rows)
    {
        foreach (var block in decoder) block.FusedAttention = !differentiatedTwice;
        using var scope = NewDisposeScope();
        var h = Amp.Full(Amp.Linear(decoder_embed, latent, compute)); // (N, 1 + K, E), fp32 beside the mask token
        long n = h.shape[0], e = h.shape[2], l = idsRestore.shape[1];
        var masked = mask_token.expand(n, l + 1 - h.shape[1], e);
        var body = cat([h[.., 1..], masked], 1).gather(1, idsRestore.unsqueeze(-1).expand(n, l, e)); // unshuffle
        h = cat([h[.., ..1], body], 1).Plus(decoder_pos_embed);
        int last = decoder.Count - 1;
        for (int i = 0; i < last; i++) h = decoder[i].call(h);
        h = rows is null ? decoder[last].call(h)[.., 1..] : decoder[last].ForwardRows(h, rows.Plus(1L)); // + 1: past the CLS row
        return norm_dec.call(h).MoveToOuterDisposeScope();
    }

    /// <summary>Logits (N, V, R) from head outputs (N, R, D), tied to an embedding table (V, D).</summary>
    private Tensor TiedLogits(Tensor headOut, PatchEmbed embedding) =>
        matmul(headOut, compute is { } t ? embedding.Weight.t().to(t) : embedding.Weight.t()).transpose(1, 2);

    /// <summary>Tokens (N, L, D) before position embeddings: the patches, the ids, or the image's patches then the text's ids.</summary>
    private Tensor Embed(Tensor x)
    {
        if (text_embed is null) return patch_embed.call(x);
        using var scope = NewDisposeScope();
        var (image, text) = SplitImageText(x);
        return cat([patch_embed.call(image), text_embed.call(text)], 1).MoveToOuterDisposeScope();
    }

    /// <summary>An image+text batch (N, C*H*W + T) as the images (N, C, H, W) and the ids (N, T).</summary>
    public (Tensor Image, Tensor Text) SplitImageText(Tensor x)
    {
        var image = Input.ImagePart;
        long pixels = image.SampleLength, n = x.shape[0];
        return (x[.., ..(int)pixels].reshape([n, .. image.SampleShape]), x[.., (int)pixels..].to_type(ScalarType.Int64));
    }

    /// <summary>
    /// Reconstruction targets: (N, L, p*q*C) channel-last patches, (N, L, p*C), or the ids themselves; for image+text
    /// the image's patches (N, Li, p*q*C) (the text's targets are its ids, <see cref="SplitImageText"/>).
    /// </summary>
    public Tensor Patchify(Tensor x)
    {
        using var scope = NewDisposeScope();
        long n = x.shape[0];
        var c = Input.Channels;
        if (Input.Kind == TokenizerKind.ImageText) x = SplitImageText(x).Image;
        Tensor y = Input.Kind switch
        {
            TokenizerKind.Patches2d or TokenizerKind.ImageText => x.reshape(n, c, Input.Grid.Rows, Input.Patch[0], Input.Grid.Cols, Input.Patch[1])
                .permute(0, 2, 4, 3, 5, 1).reshape(n, Input.ImageTokens, Input.PatchDim),
            TokenizerKind.Patches1d => x.reshape(n, c, Input.NumTokens, Input.Patch[0])
                .permute(0, 2, 3, 1).reshape(n, Input.NumTokens, Input.PatchDim),
            _ => x.alias(),
        };
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>Targets (N, L[, P]) at some rows (N, S): (N, S[, P]).</summary>
    public static Tensor TargetRows(Tensor target, Tensor rows) => target.dim() == 2
        ? target.gather(1, rows)
        : target.gather(1, rows.unsqueeze(-1).expand(rows.shape[0], rows.shape[1], target.shape[2]));

    /// <summary>sum(per-token loss * weight) / sum(weight); MSE per patch, or cross-entropy per id.</summary>
    public Tensor ReconLoss(Tensor pred, Tensor target, Tensor weight) => WeightedLoss(pred, target, weight, Input.Kind == TokenizerKind.Tokens);

    /// <summary>
    /// sum(per-token loss * weight) / sum(weight) for patch predictions (N, R, P) (MSE per patch) or logits (N, V, R)
    /// (cross-entropy per id). A weight that is all zero gives 0 (image+text: a modality with nothing to predict).
    /// </summary>
    public static Tensor WeightedLoss(Tensor pred, Tensor target, Tensor weight, bool logits)
    {
        using var scope = NewDisposeScope();
        var perToken = logits
            ? nn.functional.cross_entropy(pred, target, reduction: nn.Reduction.None) // (N, R)
            : (pred - target).Squared().mean([-1]);
        var total = weight.sum();
        return ((perToken * weight).sum() / total.ClampMin(1e-12)).MoveToOuterDisposeScope();
    }

    /// <summary>normalize(projector(mean of the latent's tokens without CLS)): (N, 128).</summary>
    public Tensor Project(Tensor latent)
    {
        if (projector is null) throw new InvalidOperationException("this model was built for MAE and has no projector");
        using var scope = NewDisposeScope();
        var pooled = latent[.., 1..].mean([1]);
        Tensor projected;
        if (Collective.Size == 1 || !training) projected = projector.call(pooled);
        else
        {
            // (N, D) -> (N, 4D) -> BatchNorm over every replica's rows -> ReLU -> (N, 128)
            var layers = projector.named_children().ToDictionary(c => c.name, c => c.module);
            var h = ((Linear)layers["0"]).call(pooled);
            h = Distributed.SyncBatchNorm.Forward((BatchNorm1d)layers["1"], h, Collective);
            projected = ((Linear)layers["3"]).call(nn.functional.relu(h));
        }
        return nn.functional.normalize(projected, dim: 1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Frozen features of full (unmasked) inputs, as linear evaluation uses them: the final-norm tokens without CLS,
    /// averaged (N, D) or per token (N, L, D). Call in eval mode under no_grad.
    /// </summary>
    public Tensor Features(Tensor x, bool perToken = false)
    {
        using var scope = NewDisposeScope();
        var tokens = Embed(x);
        var cls = cls_token.expand(tokens.shape[0], -1, -1);
        var h = cat([cls, tokens], 1).Plus(pos_embed);
        foreach (var block in encoder) h = block.call(h);
        var normed = norm_enc.call(h)[.., 1..];
        return (perToken ? normed.contiguous() : normed.mean([1])).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The backward pass from a loss over an encoding cut by <see cref="CutEncoder"/>, in stages, last layers first:
    /// the decoder and projector down to the latent, the final norm and last block, then each block down to the cut
    /// before it, the first with the tokenizer and CLS (a tied embedding gets the head's part of its gradient in the
    /// first stage and is complete in the last). Uncut: one stage, every parameter. Summed over the stages each
    /// gradient is the one a single backward pass gives.
    /// </summary>
    public IReadOnlyList<BackwardStage> BackwardStages(IReadOnlyList<GraphCut>? cuts)
    {
        var trainable = named_parameters().Where(p => p.parameter.requires_grad).ToList();
        if (cuts is null || cuts.Count != encoder.Count)
            return [new BackwardStage(trainable.Select(p => p.parameter).ToList(), null, null)];
        List<Parameter> Where(Func<string, bool> take) => trainable.Where(p => take(p.name)).Select(p => p.parameter).ToList();
        // The encoder's parameters no block or final norm owns (tokenizer, CLS) go with the first block.
        bool Embedding(string name) => IsEncoderKey(name) && !name.StartsWith("encoder.", StringComparison.Ordinal) && !name.StartsWith("norm_enc.", StringComparison.Ordinal);

        // cuts[0 .. L-2]: before blocks 1 .. L-1; cuts[L-1]: after the final norm (the latent).
        int last = encoder.Count - 1;
        var stages = new List<BackwardStage> { new(Where(n => !IsEncoderKey(n)), null, cuts[last].Leaf) };
        for (int b = last; b >= 0; b--)
        {
            string prefix = $"encoder.{b}.";
            stages.Add(new BackwardStage(
                Where(n => n.StartsWith(prefix, StringComparison.Ordinal) || (b == last && n.StartsWith("norm_enc.", StringComparison.Ordinal)) || (b == 0 && Embedding(n))),
                cuts[b].Output,
                b == 0 ? null : cuts[b - 1].Leaf));
        }
        return stages;
    }

    /// <summary>Parameters of the encoder alone (tokenizer, CLS, blocks, final norm): what a probe consumes.</summary>
    public static bool IsEncoderKey(string name) =>
        name.StartsWith("patch_embed.", StringComparison.Ordinal) || name.StartsWith("text_embed.", StringComparison.Ordinal) || name == "cls_token" || name == "pos_embed"
        || name.StartsWith("encoder.", StringComparison.Ordinal) || name.StartsWith("norm_enc.", StringComparison.Ordinal);
}
