using MetaMae.Model.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MetaMae.Model.Training;

/// <summary>
/// TorchSharp's AdamW, step for step (decoupled weight decay, bias-corrected moments; PyTorch's defaults), with every
/// scalar held across its native call: TorchSharp's own step passes implicit scalars (<c>mul_(beta1)</c>,
/// <c>add_(eps)</c>, ...) that a collection on another thread can free mid-call (see <see cref="Held"/>). Its state is
/// TorchSharp's AdamW state, so checkpoints written before and after read the same.
/// </summary>
public sealed class HeldAdamW(IEnumerable<Parameter> parameters, double lr, double weightDecay)
    : AdamW(parameters, lr: lr, weight_decay: weightDecay)
{
    public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
    {
        var o = (Options)group.Options;
        if (o.amsgrad == true || o.maximize == true) throw new NotSupportedException("HeldAdamW has no amsgrad or maximize");
        using var moments = new HeldAdamMoments(o.beta1!.Value, o.beta2!.Value, o.eps!.Value);
        using var keep = (1 - o.LearningRate!.Value * o.weight_decay!.Value).ToScalar();
        foreach (var param in group.Parameters)
        {
            if (param.grad is not { } grad) continue;
            var state = (State)_state[param.Handle];
            state.step += 1;
            param.mul_(keep);
            moments.Apply(param, grad, state.exp_avg, state.exp_avg_sq, state.step, o.LearningRate!.Value);
        }
    }, closure);
}

/// <summary>TorchSharp's Adam (weight decay added to the gradient, as PyTorch's Adam does), with held scalars.</summary>
public sealed class HeldAdam(IEnumerable<Parameter> parameters, double lr, double weightDecay)
    : Adam(parameters, lr: lr, weight_decay: weightDecay)
{
    public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
    {
        var o = (Options)group.Options;
        if (o.amsgrad == true || o.maximize == true) throw new NotSupportedException("HeldAdam has no amsgrad or maximize");
        using var moments = new HeldAdamMoments(o.beta1!.Value, o.beta2!.Value, o.eps!.Value);
        using var decay = o.weight_decay!.Value.ToScalar();
        foreach (var param in group.Parameters)
        {
            if (param.grad is not { } raw) continue;
            var state = (State)_state[param.Handle];
            state.step += 1;
            using var grad = o.weight_decay!.Value != 0 ? raw.add(param, decay) : raw.alias();
            moments.Apply(param, grad, state.exp_avg, state.exp_avg_sq, state.step, o.LearningRate!.Value);
        }
    }, closure);
}

/// <summary>Adam's moment update and bias-corrected step, shared by <see cref="HeldAdamW"/> and <see cref="HeldAdam"/>.</summary>
internal sealed class HeldAdamMoments(double beta1, double beta2, double eps) : IDisposable
{
    private readonly Scalar b1 = beta1.ToScalar(), b2 = beta2.ToScalar();
    private readonly Scalar oneMinusB1 = (1 - beta1).ToScalar(), oneMinusB2 = (1 - beta2).ToScalar();
    private readonly Scalar epsilon = eps.ToScalar();

    public void Apply(Tensor param, Tensor grad, Tensor expAvg, Tensor expAvgSq, long step, double lr)
    {
        double correction1 = 1 - Math.Pow(beta1, step), correction2 = 1 - Math.Pow(beta2, step);
        expAvg.mul_(b1).add_(grad, oneMinusB1);
        expAvgSq.mul_(b2).addcmul_(grad, grad, oneMinusB2);
        using var sqrtCorrection2 = Math.Sqrt(correction2).ToScalar();
        using var stepSize = (-lr / correction1).ToScalar();
        using var denom = expAvgSq.sqrt().div_(sqrtCorrection2).add_(epsilon, Held.One);
        param.addcdiv_(expAvg, denom, stepSize);
    }

    public void Dispose()
    {
        foreach (var s in new[] { b1, b2, oneMinusB1, oneMinusB2, epsilon }) s.Dispose();
    }
}
