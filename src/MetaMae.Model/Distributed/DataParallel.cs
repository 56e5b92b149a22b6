using MetaMae.Model.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MetaMae.Model.Distributed;

/// <summary>
/// What a replica does between its backward pass and the optimizer step, as DDP does it: agree with the others on
/// whether the step may be applied, then average the gradients (one flat buffer, all-reduced in fp32 or bf16 on the
/// wire). With one replica every method is the identity, at no cost.
/// </summary>
public sealed class DataParallel(ICollective group, WirePrecision precision = WirePrecision.Float32)
{
    public static readonly DataParallel Solo = new(SoloCollective.Instance);

    private float[] buffer = [];
    private readonly TimedCollective timed = new(group);

    /// <summary>The group, timed: every collective of a step (SyncBatchNorm's too) adds to <see cref="CommunicationSeconds"/>.</summary>
    public ICollective Group => timed;
    /// <summary>Seconds spent in collectives since the last <see cref="ResetClock"/>.</summary>
    public double CommunicationSeconds => timed.Seconds;
    public void ResetClock() => timed.Seconds = 0;
    public WirePrecision Precision { get; } = precision;
    public bool IsSolo => Group.Size == 1;

    /// <summary>
    /// Whether every replica's batch has at least <paramref name="minimum"/> records (one replica's batch that lost its
    /// records to bad input makes them all skip the step) and how many records the group trains.
    /// </summary>
    public (bool Usable, int Total) AgreeOnBatch(int size, int minimum)
    {
        if (IsSolo) return (size >= minimum, size);
        var values = new[] { size >= minimum ? 0f : 1f, size };
        Group.AllReduceSum(values, 2);
        return (values[0] == 0, (int)values[1]);
    }

    /// <summary>
    /// The group's mean of each loss part (NaN for a part a replica could not compute) and whether every replica's
    /// parts were finite: one replica's NaN stops them all before any applies its update.
    /// </summary>
    public (double[] Mean, bool AllFinite) AgreeOnLosses(IReadOnlyList<double> parts)
    {
        if (IsSolo) return (parts.ToArray(), parts.All(double.IsFinite));
        var values = new float[parts.Count + 1];
        bool finite = parts.All(double.IsFinite);
        for (int i = 0; i < parts.Count; i++) values[i] = finite ? (float)parts[i] : 0f;
        values[^1] = finite ? 0f : 1f;
        Group.AllReduceSum(values, values.Length);
        bool allFinite = values[^1] == 0;
        return (values.Take(parts.Count).Select(v => allFinite ? (double)v / Group.Size : double.NaN).ToArray(), allFinite);
    }

    /// <summary>
    /// Replaces each gradient with its mean over the group. Parameters without a gradient are left out: every
    /// replica's graph has the same shape, so they are the same ones everywhere.
    /// </summary>
    public void AverageGradients(IEnumerable<Parameter> all)
    {
        if (IsSolo) return;
        AllReduceSumFunction.RethrowBackwardFailure();
        var parameters = all.Where(p => p.grad is not null).ToList();
        using var scope = NewDisposeScope();
        long total = parameters.Sum(p => p.numel());
        if (total > int.MaxValue) throw new InvalidOperationException($"{total} gradient elements exceed one buffer");
        if (buffer.Length != total) buffer = new float[total];
        var flat = cat(parameters.Select(p => p.grad!.detach().to(float32).cpu().flatten()).ToList());
        flat.data<float>().CopyTo(buffer, 0);
        Group.AllReduceSum(buffer, (int)total, Precision);
        var reduced = Held.With((long)Group.Size, size => tensor(buffer, float32).div_(size));
        long offset = 0;
        using var _ = no_grad();
        foreach (var p in parameters)
        {
            var mean = reduced.narrow(0, offset, p.numel()).view(p.shape).to(p.dtype, p.device);
            p.grad!.copy_(mean);
            offset += p.numel();
        }
    }
}

/// <summary>A collective that adds the time each call takes (waiting for peers included) to <see cref="Seconds"/>.</summary>
internal sealed class TimedCollective(ICollective inner) : ICollective
{
    public double Seconds { get; set; }
    public int Rank => inner.Rank;
    public int Size => inner.Size;

    public void AllReduceSum(float[] data, int count, WirePrecision precision = WirePrecision.Float32)
    {
        if (inner.Size == 1) return;
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            inner.AllReduceSum(data, count, precision);
        }
        finally
        {
            Seconds += System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds;
        }
    }
}

/// <summary>A replica's identity: SHA-256 over every parameter and floating-point buffer, by name, bit for bit.</summary>
public static class ParameterDigest
{
    public static string Of(TorchSharp.torch.nn.Module model)
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        using var scope = NewDisposeScope();
        foreach (var (name, tensor) in model.named_parameters().Select(p => (p.name, (Tensor)p.parameter)).Concat(model.named_buffers()))
        {
            if (!tensor.is_floating_point()) continue;
            hash.AppendData(System.Text.Encoding.UTF8.GetBytes(name));
            var host = tensor.detach().to(float32).cpu().contiguous();
            hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(host.data<float>().ToArray().AsSpan()));
        }
        return Convert.ToHexString(hash.GetHashAndReset()).ToLowerInvariant();
    }
}
