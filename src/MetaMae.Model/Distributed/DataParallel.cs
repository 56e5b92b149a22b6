using MetaMae.Model.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MetaMae.Model.Distributed;

/// <summary>
/// What a replica does around its backward pass, as DDP does it: agree with the others on whether the step may be
/// applied, then average the gradients, all-reduced in fp32 or bf16 on the wire. With <paramref name="bucketFloats"/>
/// above 0 the backward pass is taken in stages, last layers first (<see cref="BackwardAndAverage"/>), and each bucket
/// of about that many gradients is all-reduced on a thread of its own as soon as it is complete, while the earlier
/// layers' gradients are still being computed; with 0, one flat all-reduce after the backward pass. With one replica
/// every method is the plain computation, at no cost.
/// </summary>
public sealed class DataParallel(ICollective group, WirePrecision precision = WirePrecision.Float32, int bucketFloats = 0)
{
    public static readonly DataParallel Solo = new(SoloCollective.Instance);

    private float[] buffer = [];
    private readonly List<float[]> bucketBuffers = [];
    private readonly TimedCollective timed = new(group);
    private double exposed;

    /// <summary>The group, timed: every collective of a step (SyncBatchNorm's too) adds to <see cref="TotalCommunicationSeconds"/>.</summary>
    public ICollective Group => timed;
    /// <summary>
    /// Seconds of the step spent waiting for collectives since the last <see cref="ResetClock"/>: the communication
    /// the step pays for. Without overlap it is every collective's time; with it, what the backward pass did not hide.
    /// </summary>
    public double CommunicationSeconds => timed.ExposedSeconds + exposed;
    /// <summary>Seconds spent in collectives since the last <see cref="ResetClock"/>, hidden behind the backward pass or not.</summary>
    public double TotalCommunicationSeconds => timed.Seconds;
    public void ResetClock() => (timed.Seconds, timed.ExposedSeconds, exposed) = (0, 0, 0);
    public WirePrecision Precision { get; } = precision;
    public bool IsSolo => Group.Size == 1;
    /// <summary>Whether gradients are reduced in buckets during a staged backward pass (more than one replica, buckets on).</summary>
    public bool Overlaps => !IsSolo && BucketFloats > 0;
    public int BucketFloats { get; } = bucketFloats;

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
        if (Gather(parameters, ref buffer) is not { } total) return;
        Group.AllReduceSum(buffer, total, Precision);
        Scatter(parameters, buffer);
    }

    /// <summary>
    /// The backward pass of <paramref name="loss"/> and the group's mean of every gradient. Overlapping (see
    /// <see cref="Overlaps"/>), the pass is taken stage by stage (<paramref name="stages"/>, last layers first) and the
    /// gradients complete after each stage join the open bucket; a full bucket is copied out and all-reduced on a
    /// worker thread, one bucket after another in the same order on every replica, while the next stages run. The
    /// step then waits for the last bucket and writes the means back. Otherwise: backward, then one all-reduce.
    /// </summary>
    public void BackwardAndAverage(Tensor loss, Func<IReadOnlyList<MetaMae.Model.BackwardStage>> stagesOf, IEnumerable<Parameter> all)
    {
        if (!Overlaps)
        {
            loss.backward();
            AverageGradients(all);
            return;
        }
        using var scope = NewDisposeScope();
        var stages = stagesOf(); // only when overlapping: the plain pass needs no stages
        var lastStage = new Dictionary<Parameter, int>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < stages.Count; i++)
            foreach (var p in stages[i].Parameters) lastStage[p] = i;

        var buckets = new List<(List<Parameter> Parameters, float[] Buffer, int Count)>();
        var open = new List<Parameter>();
        long openFloats = 0;
        // One bucket after another, on one thread of the step's own (not the thread pool, whose threads the actors
        // share: a starved pool delayed a bucket by a second): collectives are made in the same order on every replica.
        using var reducer = new BucketReducer(this);
        void Close()
        {
            if (open.Count == 0) return;
            int index = buckets.Count;
            if (bucketBuffers.Count <= index) bucketBuffers.Add([]);
            var bucketBuffer = bucketBuffers[index];
            int count = Gather(open, ref bucketBuffer) ?? 0;
            bucketBuffers[index] = bucketBuffer;
            buckets.Add((open, bucketBuffer, count));
            reducer.Add(bucketBuffer, count);
            open = [];
            openFloats = 0;
        }

        try
        {
            Tensor? arriving = null; // the gradient the previous stage left at its leaf
            for (int i = 0; i < stages.Count; i++)
            {
                var stage = stages[i];
                if (stage.From is null) autograd.backward([loss]);
                else autograd.backward([stage.From], [arriving ?? throw new InvalidOperationException($"backward stage {i - 1} left no gradient at its cut")]);
                AllReduceSumFunction.RethrowBackwardFailure();
                foreach (var p in stage.Parameters)
                {
                    if (lastStage[p] != i || p.grad is null) continue;
                    open.Add(p);
                    openFloats += p.numel();
                }
                if (openFloats >= BucketFloats) Close();
                arriving = stage.Leaf?.grad;
            }
            Close();
        }
        finally
        {
            // Whatever happened on this side, no bucket may still be writing when the step returns or throws.
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            try { reducer.Finish(); }
            finally { exposed += System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds; }
        }
        foreach (var (parameters, bucketBuffer, _) in buckets) Scatter(parameters, bucketBuffer);
    }

    /// <summary>Copies the parameters' gradients into one flat fp32 buffer (grown when needed); their count, null when none.</summary>
    private static int? Gather(List<Parameter> parameters, ref float[] into)
    {
        long total = parameters.Sum(p => p.numel());
        if (total == 0) return null;
        if (total > int.MaxValue) throw new InvalidOperationException($"{total} gradient elements exceed one buffer");
        if (into.Length != total) into = new float[total];
        using var scope = NewDisposeScope();
        var flat = cat(parameters.Select(p => p.grad!.detach().to(float32).cpu().flatten()).ToList());
        flat.data<float>().CopyTo(into, 0);
        return (int)total;
    }

    /// <summary>Writes buffer / group size back into the parameters' gradients, in the order <see cref="Gather"/> read them.</summary>
    private void Scatter(List<Parameter> parameters, float[] from)
    {
        using var scope = NewDisposeScope();
        var reduced = Held.With((long)Group.Size, size => tensor(from, float32).div_(size));
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

/// <summary>
/// The thread that all-reduces one step's buckets, in the order they were added. A failed bucket fails the ones after
/// it; <see cref="Finish"/> waits for the last and rethrows the first failure.
/// </summary>
internal sealed class BucketReducer : IDisposable
{
    private readonly System.Collections.Concurrent.BlockingCollection<(float[] Buffer, int Count)> queue = new();
    private readonly Thread thread;
    private System.Runtime.ExceptionServices.ExceptionDispatchInfo? failure;

    public BucketReducer(DataParallel parallel)
    {
        thread = new Thread(() =>
        {
            TimedCollective.Hidden = true;
            foreach (var (buffer, count) in queue.GetConsumingEnumerable())
            {
                if (failure is not null) continue;
                try { parallel.Group.AllReduceSum(buffer, count, parallel.Precision); }
                catch (Exception e) { failure = System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e); }
            }
        }) { IsBackground = true, Name = "gradient buckets" };
        thread.Start();
    }

    public void Add(float[] buffer, int count) => queue.Add((buffer, count));

    /// <summary>Waits until every added bucket is reduced; throws the first failure.</summary>
    public void Finish()
    {
        Join();
        failure?.Throw();
    }

    public void Dispose()
    {
        Join();
        queue.Dispose();
    }

    private void Join()
    {
        if (!queue.IsAddingCompleted) queue.CompleteAdding();
        thread.Join();
    }
}

/// <summary>A collective that adds the time each call takes (waiting for peers included) to <see cref="Seconds"/>.</summary>
internal sealed class TimedCollective(ICollective inner) : ICollective
{
    /// <summary>Set on the thread that reduces buckets: its time is hidden behind the backward pass, not the step's own.</summary>
    [ThreadStatic] public static bool Hidden;

    public double Seconds { get; set; }
    /// <summary>The part of <see cref="Seconds"/> spent on the step's own thread (not <see cref="Hidden"/>).</summary>
    public double ExposedSeconds { get; set; }
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
            double seconds = System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds;
            lock (this)
            {
                Seconds += seconds;
                if (!Hidden) ExposedSeconds += seconds;
            }
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
