using TorchSharp;
using static TorchSharp.torch;

namespace MetaMae.Model.Layers;

/// <summary>
/// Tensor arithmetic whose scalars stay alive until libtorch has returned. TorchSharp 0.107 passes a Scalar's handle to
/// native code and keeps no reference to the Scalar, so an implicit one (the alpha of <c>x + y</c> and of
/// <c>add_(1)</c>, the 0.5 of <c>x * 0.5</c>, AdamW's <c>add_(eps)</c>, BatchNorm's <c>num_batches_tracked.add_(1)</c>)
/// can be finalized during the call by a collection that another thread's allocation starts (remoting, the data
/// stream): libtorch then reads a freed <c>c10::Scalar</c> and fails with "Expected false to be true" (Scalar.h,
/// toFloat) or "Unknown scalar type", or computes with whatever value now sits there. A learner group's remoting
/// traffic made it frequent (issue 19). Here every scalar is either a static (rooted for the process) or held by a
/// <c>using</c> across the call; <c>HeldScalarSpecs</c> scans this assembly so that no implicit Scalar comes back.
/// Integer scalars stay integers (an int64 index tensor plus a double would become a float tensor).
/// </summary>
public static class Held
{
    public static readonly Scalar Zero = 0.ToScalar();
    public static readonly Scalar One = 1.ToScalar();
    public static readonly Scalar Two = 2.ToScalar();

    /// <summary>Runs <paramref name="op"/> with a scalar that lives until it returns.</summary>
    public static Tensor With(double value, Func<Scalar, Tensor> op)
    {
        using var s = value.ToScalar();
        return op(s);
    }

    public static Tensor With(long value, Func<Scalar, Tensor> op)
    {
        using var s = value.ToScalar();
        return op(s);
    }

    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, One);
    public static Tensor Plus(this Tensor a, double c) => With(c, s => a.add(s, One));
    public static Tensor Plus(this Tensor a, long c) => With(c, s => a.add(s, One));
    public static Tensor Minus(this Tensor a, long c) => With(c, s => a.sub(s));
    public static Tensor Times(this Tensor a, double c) => With(c, s => a.mul(s));
    public static Tensor Times(this Tensor a, long c) => With(c, s => a.mul(s));
    public static Tensor DividedBy(this Tensor a, double c) => With(c, s => a.div(s));
    public static Tensor Squared(this Tensor a) => a.pow(Two);

    /// <summary>1 - a (as <c>1 - a</c> computes it: the negation is exact, so the sum is the same number).</summary>
    public static Tensor OneMinus(this Tensor a) => a.neg().add(One, One);

    public static Tensor Lt(this Tensor a, double c) => With(c, s => a.lt(s));
    public static Tensor Ge(this Tensor a, double c) => With(c, s => a.ge(s));
    public static Tensor Ne(this Tensor a, long c) => With(c, s => a.ne(s));
    public static Tensor ClampMin(this Tensor a, double c) => With(c, s => a.clamp_min(s));
    public static Tensor MaskedFill(this Tensor a, Tensor mask, double c) => With(c, s => a.masked_fill(mask, s));

    /// <summary>a += alpha * b, in place.</summary>
    public static Tensor AddInPlace(this Tensor a, Tensor b, double alpha) => With(alpha, s => a.add_(b, s));
    public static Tensor MulInPlace(this Tensor a, double c) => With(c, s => a.mul_(s));

    /// <summary>[start, stop) as int64.</summary>
    public static Tensor Arange(long start, long stop, Device device)
    {
        using var from = start.ToScalar();
        using var to = stop.ToScalar();
        return arange(from, to, One, ScalarType.Int64, device);
    }
}
