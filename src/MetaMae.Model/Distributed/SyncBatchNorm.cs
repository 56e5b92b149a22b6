using MetaMae.Model.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MetaMae.Model.Distributed;

/// <summary>
/// y = sum of x over every replica, differentiable: the gradient of the group's total loss with respect to each
/// replica's x is the sum over replicas of the gradient with respect to y, so the backward pass all-reduces too.
/// Every replica's autograd graph has the same shape, so their backward passes make these calls in the same order.
/// </summary>
internal sealed class AllReduceSumFunction : autograd.SingleTensorFunction<AllReduceSumFunction>
{
    public override string Name => "MetaMaeAllReduceSum";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var x = (Tensor)vars[0];
        var group = (ICollective)vars[1];
        ctx.save_data("group", group);
        return Reduce(x, group);
    }

    /// <summary>
    /// An exception must not leave a backward pass (it would unwind through libtorch and end the process): a collective
    /// that fails here gives a zero gradient and is rethrown by <see cref="RethrowBackwardFailure"/> after backward.
    /// </summary>
    [ThreadStatic] private static CollectiveAbortedException? backwardFailure;

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        try
        {
            return [Reduce(grad_output, (ICollective)ctx.get_data("group")), null!];
        }
        catch (CollectiveAbortedException e)
        {
            backwardFailure ??= e;
            return [zeros_like(grad_output), null!];
        }
    }

    public static void RethrowBackwardFailure()
    {
        var failure = backwardFailure;
        backwardFailure = null;
        if (failure is not null) throw new CollectiveAbortedException(failure.Message);
    }

    private static Tensor Reduce(Tensor x, ICollective group)
    {
        using var _ = no_grad();
        var host = x.detach().to(float32).cpu().contiguous();
        var buffer = host.data<float>().ToArray();
        group.AllReduceSum(buffer, buffer.Length);
        return tensor(buffer, x.shape, dtype: float32).to(x.dtype, x.device);
    }
}

/// <summary>
/// BatchNorm1d with statistics over every replica's rows (SyncBatchNorm semantics): the mean and the biased variance
/// used to normalise are the group's, the running variance gets the unbiased group variance, and the backward pass
/// carries each replica's share of the other replicas' losses through the shared statistics. It uses the weights
/// and buffers of an ordinary <see cref="BatchNorm1d"/>, so checkpoints do not change with the group's size.
/// </summary>
public static class SyncBatchNorm
{
    /// <summary>
    /// x: (n, C) in training mode; with one replica (or in eval mode) this is what <paramref name="norm"/>.call(x)
    /// computes, through F.batch_norm with its own held scalars: BatchNorm's forward increments num_batches_tracked
    /// with an implicit scalar (see <see cref="Held"/>).
    /// </summary>
    public static Tensor Forward(BatchNorm1d norm, Tensor x, ICollective group)
    {
        double momentum = norm.momentum ?? 0.1;
        if (group.Size == 1 || !norm.training)
        {
            if (norm.training) Count(norm);
            return nn.functional.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                training: norm.training, momentum: momentum, eps: norm.eps);
        }
        using var scope = NewDisposeScope();
        long channels = x.shape[1];
        var local = cat([x.sum(dim: 0), ones(1, dtype: x.dtype, device: x.device).Times(x.shape[0])]); // (C + 1): sums, then the row count
        var sums = AllReduceSumFunction.apply(local, group);
        var count = sums[channels].detach();
        var mean = sums[..(int)channels] / count;
        var centred = x - mean;
        var variance = AllReduceSumFunction.apply(centred.Squared().sum(dim: 0), group) / count; // two passes: no cancellation
        var y = centred * variance.Plus(norm.eps).rsqrt();
        if (norm.weight is not null) y = (y * norm.weight).Plus(norm.bias!);
        using (no_grad())
        {
            double n = count.item<float>();
            norm.running_mean!.MulInPlace(1 - momentum).AddInPlace(mean.detach(), momentum);
            norm.running_var!.MulInPlace(1 - momentum).AddInPlace(variance.detach().Times(n / Math.Max(1, n - 1)), momentum);
            Count(norm);
        }
        return y.MoveToOuterDisposeScope();
    }

    private static void Count(BatchNorm1d norm)
    {
        using var _ = no_grad();
        norm.num_batches_tracked?.add_(Held.One, Held.One);
    }
}
