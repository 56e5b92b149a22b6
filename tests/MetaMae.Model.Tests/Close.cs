using static TorchSharp.torch;

namespace MetaMae.Model.Tests;

/// <summary>The fixtures' tolerances: tensors within a fraction of their largest value; scalars relative.</summary>
internal static class Close
{
    public static double MaxAbsDiff(Tensor actual, Tensor expected)
    {
        using var a = actual.detach().to_type(ScalarType.Float64);
        using var e = expected.to_type(ScalarType.Float64);
        using var d = (a - e).abs().max();
        return d.item<double>();
    }

    public static void Tensor(Tensor expected, Tensor actual, string what, double relative = 1e-4)
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape),
            $"{what}: shape [{string.Join(",", actual.shape)}], expected [{string.Join(",", expected.shape)}]");
        using var e64 = expected.to_type(ScalarType.Float64);
        using var scaleT = e64.abs().max();
        var scale = Math.Max(scaleT.item<double>(), 1e-12);
        var diff = MaxAbsDiff(actual, expected);
        Assert.True(diff <= relative * scale, $"{what}: max |diff| {diff:G4} exceeds {relative:G2} x max |expected| {scale:G4}");
    }

    public static void Scalar(double expected, double actual, string what, double relative = 1e-5) =>
        Assert.True(Math.Abs(actual - expected) <= relative * Math.Abs(expected),
            $"{what}: {actual:R}, expected {expected:R} (relative tolerance {relative:G2})");
}

internal static class Bitwise
{
    /// <summary>Same shape, dtype and bytes.</summary>
    public static bool Equal(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape) || a.dtype != b.dtype) return false;
        using var ca = a.detach().contiguous();
        using var cb = b.detach().contiguous();
        return ca.bytes.SequenceEqual(cb.bytes);
    }
}
