using MetaMae.Model.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace MetaMae.Model;

/// <summary>The losses of one forward pass, and every intermediate the parity tests compare.</summary>
public sealed class ObjectiveOutput
{
    public required Tensor Total { get; init; }
    /// <summary>Reconstruction loss on the masked tokens (the outer loss for MetaMAE).</summary>
    public required Tensor Recon { get; init; }
    /// <summary>Image+text: the parts of <see cref="Recon"/>, before their weights (MSE on patches, cross-entropy on text).</summary>
    public Tensor? ReconImage { get; init; }
    public Tensor? ReconText { get; init; }
    public Tensor? Contrastive { get; init; }
    /// <summary>Reconstruction loss on the support set, before adaptation.</summary>
    public Tensor? Support { get; init; }

    public required Tensor Latent { get; init; }
    /// <summary>Where the encoder's graph was cut, when the model cuts it (see <see cref="MaskedAutoencoder.BackwardStages"/>).</summary>
    public IReadOnlyList<GraphCut>? Cuts { get; init; }
    public required Tensor Mask { get; init; }
    public required Tensor IdsRestore { get; init; }
    /// <summary>The patches or ids to reconstruct (image+text: the image's patches) and their predictions.</summary>
    public required Tensor Target { get; init; }
    public required Tensor Pred { get; init; }
    public Tensor? Nearby { get; init; }
    public Tensor? SupportMask { get; init; }
    /// <summary>The support set's token indices (N, S), padded; see <see cref="Masking.SupportRows"/>.</summary>
    public Tensor? SupportRows { get; init; }
    /// <summary>Predictions at <see cref="SupportRows"/> only: (N, S, P) or logits (N, V, S).</summary>
    public Tensor? PredSupport { get; init; }
    public Tensor? AdaptedLatent { get; init; }
    public Tensor? ProjAmortized { get; init; }
    public Tensor? ProjAdapted { get; init; }
}

/// <summary>A reconstruction loss and the predictions it read (see <see cref="Objectives"/>).</summary>
internal sealed record Reconstruction(Tensor Loss, Tensor Pred, Tensor? Rows = null, Tensor? ImageLoss = null, Tensor? TextLoss = null);

/// <summary>
/// MAE and MetaMAE losses as pure functions of (model, batch, random draws). Tensors are created in the caller's
/// dispose scope: call inside one (the train step does).
/// </summary>
public static class Objectives
{
    public static ObjectiveOutput Compute(MaskedAutoencoder model, Tensor x, MaskingDraws draws, Training.PassTimer? timer = null)
    {
        var options = model.Config.Options;
        var enc = model.Encode(x, draws.MaskingNoise);
        var target = model.Patchify(x);
        var text = model.Input.Kind == TokenizerKind.ImageText ? model.SplitImageText(x).Text : null;
        timer?.Lap("encoder");
        if (options.Objective == Objective.Mae)
        {
            var r = Reconstruct(model, enc.Latent, enc.IdsRestore, target, text, enc.Mask, secondOrderInner: false, supportRowsOnly: false);
            timer?.Lap("outer decode");
            return new ObjectiveOutput
            {
                Total = r.Loss, Recon = r.Loss, ReconImage = r.ImageLoss, ReconText = r.TextLoss,
                Latent = enc.Latent, Cuts = enc.Cuts, Mask = enc.Mask, IdsRestore = enc.IdsRestore, Target = target, Pred = r.Pred,
            };
        }
        return MetaStep(model, draws, enc, target, text, options, timer);
    }

    private static ObjectiveOutput MetaStep(MaskedAutoencoder model, MaskingDraws draws, EncoderOutput enc,
        Tensor target, Tensor? text, ObjectiveOptions options, Training.PassTimer? timer)
    {
        var (latent, mask, idsRestore) = (enc.Latent, enc.Mask, enc.IdsRestore);
        var nearby = Masking.NearbyMask(mask, model.Input);
        var support = Masking.SupportMask(mask, nearby, draws.SupportUniform, options.SupportRatio);

        // Inner step: one gradient step on the latent (not the weights) on the support set. Only the support rows
        // are decoded to the end (the loss reads nothing else).
        var secondOrder = !options.FirstOrder;
        var inner = Reconstruct(model, latent, idsRestore, target, text, support, secondOrderInner: secondOrder, supportRowsOnly: true);
        timer?.Lap("inner decode");
        var grad = autograd.grad([inner.Loss.Times(latent.shape[0])], [latent],
            retain_graph: secondOrder, create_graph: secondOrder)[0];
        var adapted = latent - grad.Times(options.InnerLr);
        timer?.Lap("inner gradient");

        // Outer reconstruction from the adapted latent.
        var outer = Reconstruct(model, adapted, idsRestore, target, text, mask, secondOrderInner: false, supportRowsOnly: false);
        timer?.Lap("outer decode");

        // Task-contrastive loss between amortized and adapted latents (NT-Xent).
        var h1 = model.Project(latent);
        var h2 = model.Project(adapted);
        var contrastive = NtXent(h1, h2, options.Temperature);
        var total = outer.Loss.Plus(contrastive.Times(options.ContrastiveWeight));
        timer?.Lap("projector");

        return new ObjectiveOutput
        {
            Total = total, Recon = outer.Loss, ReconImage = outer.ImageLoss, ReconText = outer.TextLoss,
            Contrastive = contrastive, Support = inner.Loss,
            Latent = latent, Cuts = enc.Cuts, Mask = mask, IdsRestore = idsRestore, Target = target, Pred = outer.Pred,
            Nearby = nearby, SupportMask = support, SupportRows = inner.Rows, PredSupport = inner.Pred, AdaptedLatent = adapted,
            ProjAmortized = h1, ProjAdapted = h2,
        };
    }

    /// <summary>
    /// The reconstruction loss weighted by <paramref name="weight"/> (N, L): every token decoded, or (the inner step)
    /// only the rows with weight. Image+text: ImageLossWeight * MSE over the patches + TextLossWeight * cross-entropy
    /// over the text's ids (padding left out), each normalised by its own weight.
    /// </summary>
    private static Reconstruction Reconstruct(MaskedAutoencoder model, Tensor latent, Tensor idsRestore, Tensor target, Tensor? text,
        Tensor weight, bool secondOrderInner, bool supportRowsOnly)
    {
        var input = model.Input;
        if (input.Kind != TokenizerKind.ImageText)
        {
            if (!supportRowsOnly)
            {
                var pred = model.Decode(latent, idsRestore, secondOrderInner);
                return new Reconstruction(model.ReconLoss(pred, target, weight), pred);
            }
            var (rows, rowWeight) = Masking.SupportRows(weight);
            var predRows = model.Decode(latent, idsRestore, secondOrderInner, rows);
            return new Reconstruction(model.ReconLoss(predRows, MaskedAutoencoder.TargetRows(target, rows), rowWeight), predRows, rows);
        }

        var segments = Masking.Segments(input, model.Config.Options);
        int li = input.ImageTokens;
        Tensor image, logits, imageTarget, textTarget, imageWeight, textWeight;
        Tensor? allRows = null;
        if (!supportRowsOnly)
        {
            (image, logits) = model.DecodeJoint(latent, idsRestore, secondOrderInner);
            (imageTarget, textTarget) = (target, text!);
            (imageWeight, textWeight) = (weight[.., ..li], weight[.., li..]);
        }
        else
        {
            (var imageRows, imageWeight) = Masking.SupportRows(weight, segments[0]);
            (var textRows, textWeight) = Masking.SupportRows(weight, segments[1]);
            (image, logits) = model.DecodeJoint(latent, idsRestore, secondOrderInner, imageRows, textRows);
            imageTarget = MaskedAutoencoder.TargetRows(target, imageRows);
            textTarget = text!.gather(1, textRows.Minus(li));
            allRows = cat([imageRows, textRows], 1);
        }
        var options = model.Config.Options;
        if (options.TextPadId >= 0) textWeight = textWeight * textTarget.Ne(options.TextPadId); // padding is not text
        var imageLoss = MaskedAutoencoder.WeightedLoss(image, imageTarget, imageWeight, logits: false);
        var textLoss = MaskedAutoencoder.WeightedLoss(logits, textTarget, textWeight, logits: true);
        var loss = imageLoss.Times(options.ImageLossWeight).Plus(textLoss.Times(options.TextLossWeight));
        return new Reconstruction(loss, image, allRows, imageLoss, textLoss);
    }

    /// <summary>NT-Xent over [h1; h2] (2N unit vectors): each row's target is its partner, self-similarity excluded.</summary>
    public static Tensor NtXent(Tensor h1, Tensor h2, double temperature)
    {
        using var scope = NewDisposeScope();
        long n = h1.shape[0];
        var z = cat([h1, h2], 0);
        var logits = matmul(z, z.t()).DividedBy(temperature);
        var self = eye(2 * n, dtype: ScalarType.Bool, device: z.device);
        logits = logits.MaskedFill(self, double.NegativeInfinity);
        var labels = cat([Held.Arange(n, 2 * n, z.device), Held.Arange(0, n, z.device)], 0);
        return nn.functional.cross_entropy(logits, labels).MoveToOuterDisposeScope();
    }
}
