using TorchSharp;
using static TorchSharp.torch;

namespace MetaMae.Model.Layers;

/// <summary>
/// Inverted dropout that draws its mask from a generator the owner controls, not libtorch's global one: the learner's
/// generator is checkpointed, so a resumed run draws the very masks the uninterrupted run drew, whatever other threads
/// (evaluators) do with the global generator meanwhile. Identity in eval mode or with p = 0.
/// </summary>
public sealed class GeneratorDropout(string name, double p, Func<Generator?> generator) : nn.Module<Tensor, Tensor>(name)
{
    public override Tensor forward(Tensor x)
    {
        if (!training || p == 0) return x.alias();
        using var scope = NewDisposeScope();
        // where() keeps only the boolean mask for backward (a quarter of a float mask's bytes).
        var keep = rand(x.shape, generator: generator(), device: x.device).Ge(p);
        return where(keep, x.Times(1 / (1 - p)), 0).MoveToOuterDisposeScope();
    }
}
