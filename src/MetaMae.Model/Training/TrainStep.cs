using System.Diagnostics;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MetaMae.Model.Training;

/// <summary>What one optimisation step reports.</summary>
public sealed record StepMetrics(
    long Step, double Total, double Recon, double? Contrastive, double? Support, double GradNorm, double LearningRate,
    double Seconds);

/// <summary>Thrown when a loss is NaN or infinite: training stops rather than corrupt the weights.</summary>
public sealed class NonFiniteLossException(long step, string parts)
    : Exception($"non-finite loss at step {step} ({parts}); stopping before the optimizer applies it. " +
                "Lower the learning rate or the inner lr, or check the input batch for NaN/Inf.")
{
    public long Step { get; } = step;
}

/// <summary>AdamW as the reference uses it: every trainable parameter, one group.</summary>
public static class Optimizers
{
    public static optim.Optimizer AdamW(MaskedAutoencoder model, double lr = 1e-4, double weightDecay = 1e-4) =>
        optim.AdamW(model.parameters().Where(p => p.requires_grad), lr: lr, weight_decay: weightDecay);

    public static void SetLearningRate(optim.Optimizer optimizer, double lr)
    {
        foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
    }
}

/// <summary>Learning rate as a pure function of the step: linear warm-up, then constant (the reference is constant).</summary>
public static class LearningRate
{
    public static double At(long step, double baseLr, long warmupSteps) =>
        warmupSteps > 0 && step < warmupSteps ? baseLr * (step + 1) / warmupSteps : baseLr;
}

/// <summary>One MetaMAE (or MAE) optimisation step: (model, optimizer, batch, draws) -> metrics.</summary>
public static class TrainStep
{
    public static StepMetrics Run(MaskedAutoencoder model, optim.Optimizer optimizer, Tensor x, MaskingDraws draws,
        long step, double lr)
    {
        var clock = Stopwatch.StartNew();
        using var scope = NewDisposeScope();
        model.train();
        Optimizers.SetLearningRate(optimizer, lr);
        optimizer.zero_grad();
        // The forward pass updates BatchNorm's running statistics; keep a copy so a refused step leaves no trace.
        var buffers = model.modules().OfType<BatchNorm1d>().SelectMany(m => m.buffers()).Select(b => (b, b.clone())).ToList();

        var output = Objectives.Compute(model, x, draws);
        double total = output.Total.item<float>();
        double recon = output.Recon.item<float>();
        double? contrastive = output.Contrastive?.item<float>();
        double? support = output.Support?.item<float>();
        if (!double.IsFinite(total))
        {
            using (no_grad())
                foreach (var (live, saved) in buffers) live.copy_(saved);
            throw new NonFiniteLossException(step, $"total {total}, recon {recon}, contrastive {contrastive}, support {support}");
        }

        output.Total.backward();
        var gradNorm = GradNorm(model);
        optimizer.step();
        return new StepMetrics(step, total, recon, contrastive, support, gradNorm, lr, clock.Elapsed.TotalSeconds);
    }

    /// <summary>The global L2 norm of all parameter gradients.</summary>
    public static double GradNorm(nn.Module model)
    {
        using var scope = NewDisposeScope();
        var squares = model.parameters().Where(p => p.grad is not null).Select(p => p.grad!.square().sum()).ToList();
        return squares.Count == 0 ? 0 : stack(squares).sum().sqrt().item<float>();
    }
}
