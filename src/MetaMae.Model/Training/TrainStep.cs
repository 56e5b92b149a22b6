using System.Diagnostics;
using MetaMae.Model.Distributed;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MetaMae.Model.Training;

/// <summary>What one optimisation step reports.</summary>
public sealed record StepMetrics(
    long Step, double Total, double Recon, double? Contrastive, double? Support, double GradNorm, double LearningRate,
    double Seconds, double CommunicationSeconds = 0, double? ReconImage = null, double? ReconText = null, double TotalCommunicationSeconds = 0);

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
        new HeldAdamW(model.parameters().Where(p => p.requires_grad), lr, weightDecay);

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

/// <summary>
/// One MetaMAE (or MAE) optimisation step: (model, optimizer, batch, draws) -> metrics, in three parts: compute the
/// gradients, reduce them across the replica group (the identity for one learner), apply them. With a group, the
/// replicas first agree on the losses (a non-finite loss on any replica stops all of them before any update) and the
/// reported losses are the group's means.
/// </summary>
public static class TrainStep
{
    public static StepMetrics Run(MaskedAutoencoder model, optim.Optimizer optimizer, Tensor x, MaskingDraws draws,
        long step, double lr, DataParallel? parallel = null, PassTimer? timer = null)
    {
        parallel ??= DataParallel.Solo;
        var clock = Stopwatch.StartNew();
        parallel.ResetClock();
        using var scope = NewDisposeScope();
        model.train();
        model.Collective = parallel.Group;
        model.CutEncoder = parallel.Overlaps;
        Optimizers.SetLearningRate(optimizer, lr);
        optimizer.zero_grad();
        // The forward pass updates BatchNorm's running statistics; keep a copy so a refused step leaves no trace.
        var buffers = model.modules().OfType<BatchNorm1d>().SelectMany(m => m.buffers()).Select(b => (b, b.clone())).ToList();

        timer?.Start();
        var output = Objectives.Compute(model, x, draws, timer);
        double?[] parts = [output.Total.item<float>(), output.Recon.item<float>(), output.Contrastive?.item<float>(), output.Support?.item<float>(),
            output.ReconImage?.item<float>(), output.ReconText?.item<float>()];
        var (mean, allFinite) = parallel.AgreeOnLosses(parts.Select(p => p ?? 0).ToList());
        if (!allFinite)
        {
            using (no_grad())
                foreach (var (live, saved) in buffers) live.copy_(saved);
            var where = parallel.IsSolo ? "" : $"on {(double.IsFinite(parts[0]!.Value) ? "another replica" : $"replica {parallel.Group.Rank}")} of {parallel.Group.Size}, ";
            throw new NonFiniteLossException(step, $"{where}total {parts[0]}, recon {parts[1]}, contrastive {parts[2]}, support {parts[3]}");
        }

        // Backward and the group's mean gradients: with buckets, communication runs behind the backward pass.
        parallel.BackwardAndAverage(output.Total, () => model.BackwardStages(output.Cuts), model.parameters());
        timer?.Lap("backward");
        var gradNorm = GradNorm(model);
        optimizer.step();
        timer?.Lap("optimizer");
        double? Optional(int k) => parts[k] is null ? null : mean[k]; // the group's mean of a loss this objective has
        return new StepMetrics(step, mean[0], mean[1], Optional(2), Optional(3), gradNorm, lr,
            clock.Elapsed.TotalSeconds, parallel.CommunicationSeconds, Optional(4), Optional(5), parallel.TotalCommunicationSeconds);
    }

    /// <summary>
    /// The seed of step <paramref name="step"/>'s masking and dropout draws on replica <paramref name="rank"/>: a pure
    /// function, so a group that re-forms from a checkpoint replays exactly what it would have drawn.
    /// </summary>
    public static long DrawSeed(long seed, int rank, long step)
    {
        ulong z = unchecked((ulong)seed * 0x9E3779B97F4A7C15UL ^ (ulong)rank * 0xBF58476D1CE4E5B9UL ^ (ulong)step * 0x94D049BB133111EBUL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return (long)((z ^ (z >> 31)) >> 1);
    }

    /// <summary>The global L2 norm of all parameter gradients.</summary>
    public static double GradNorm(nn.Module model)
    {
        using var scope = NewDisposeScope();
        // One norm per gradient (no squared copy of each), then the norm of those.
        var norms = model.parameters().Where(p => p.grad is not null).Select(p => p.grad!.norm()).ToList();
        return norms.Count == 0 ? 0 : stack(norms).norm().item<float>();
    }
}
