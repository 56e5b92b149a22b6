using TorchSharp;
using static TorchSharp.torch;

namespace MetaMae.Model;

/// <summary>The losses of one forward pass, and every intermediate the parity tests compare.</summary>
public sealed class ObjectiveOutput
{
    public required Tensor Total { get; init; }
    /// <summary>Reconstruction loss on the masked tokens (the outer loss for MetaMAE).</summary>
    public required Tensor Recon { get; init; }
    public Tensor? Contrastive { get; init; }
    /// <summary>Reconstruction loss on the support set, before adaptation.</summary>
    public Tensor? Support { get; init; }

    public required Tensor Latent { get; init; }
    public required Tensor Mask { get; init; }
    public required Tensor IdsRestore { get; init; }
    public required Tensor Target { get; init; }
    public required Tensor Pred { get; init; }
    public Tensor? Nearby { get; init; }
    public Tensor? SupportMask { get; init; }
    public Tensor? PredSupport { get; init; }
    public Tensor? AdaptedLatent { get; init; }
    public Tensor? ProjAmortized { get; init; }
    public Tensor? ProjAdapted { get; init; }
}

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
        timer?.Lap("encoder");
        if (options.Objective == Objective.Mae)
        {
            var pred = model.Decode(enc.Latent, enc.IdsRestore);
            var loss = model.ReconLoss(pred, target, enc.Mask);
            timer?.Lap("outer decode");
            return new ObjectiveOutput
            {
                Total = loss, Recon = loss, Latent = enc.Latent, Mask = enc.Mask, IdsRestore = enc.IdsRestore,
                Target = target, Pred = pred,
            };
        }
        return MetaStep(model, x, draws, enc, target, options, timer);
    }

    private static ObjectiveOutput MetaStep(MaskedAutoencoder model, Tensor x, MaskingDraws draws, EncoderOutput enc,
        Tensor target, ObjectiveOptions options, Training.PassTimer? timer)
    {
        var (latent, mask, idsRestore) = (enc.Latent, enc.Mask, enc.IdsRestore);
        var nearby = Masking.NearbyMask(mask, model.Input);
        var support = Masking.SupportMask(mask, nearby, draws.SupportUniform, options.SupportRatio);

        // Inner step: one gradient step on the latent (not the weights) on the support set.
        var secondOrder = !options.FirstOrder;
        var predSupport = model.Decode(latent, idsRestore, differentiatedTwice: secondOrder);
        var supportLoss = model.ReconLoss(predSupport, target, support);
        timer?.Lap("inner decode");
        var grad = autograd.grad([supportLoss * x.shape[0]], [latent],
            retain_graph: secondOrder, create_graph: secondOrder)[0];
        var adapted = latent - options.InnerLr * grad;
        timer?.Lap("inner gradient");

        // Outer reconstruction from the adapted latent.
        var pred = model.Decode(adapted, idsRestore);
        var recon = model.ReconLoss(pred, target, mask);
        timer?.Lap("outer decode");

        // Task-contrastive loss between amortized and adapted latents (NT-Xent).
        var h1 = model.Project(latent);
        var h2 = model.Project(adapted);
        var contrastive = NtXent(h1, h2, options.Temperature);
        var total = recon + options.ContrastiveWeight * contrastive;
        timer?.Lap("projector");

        return new ObjectiveOutput
        {
            Total = total, Recon = recon, Contrastive = contrastive, Support = supportLoss,
            Latent = latent, Mask = mask, IdsRestore = idsRestore, Target = target, Pred = pred,
            Nearby = nearby, SupportMask = support, PredSupport = predSupport, AdaptedLatent = adapted,
            ProjAmortized = h1, ProjAdapted = h2,
        };
    }

    /// <summary>NT-Xent over [h1; h2] (2N unit vectors): each row's target is its partner, self-similarity excluded.</summary>
    public static Tensor NtXent(Tensor h1, Tensor h2, double temperature)
    {
        using var scope = NewDisposeScope();
        long n = h1.shape[0];
        var z = cat([h1, h2], 0);
        var logits = matmul(z, z.t()).div(temperature);
        var self = eye(2 * n, dtype: ScalarType.Bool, device: z.device);
        logits = logits.masked_fill(self, double.NegativeInfinity);
        var labels = cat([arange(n, 2 * n, device: z.device), arange(0, n, device: z.device)], 0);
        return nn.functional.cross_entropy(logits, labels).MoveToOuterDisposeScope();
    }
}
