using TorchSharp;
using static TorchSharp.torch;

namespace MetaMae.Model;

/// <summary>Device choice and thread settings, decided at run time so one build serves CPU and CUDA machines.</summary>
public static class TorchRuntime
{
    public static readonly string[] DeviceChoices = ["auto", "cpu", "cuda"];

    /// <summary>auto (CUDA when libtorch sees a GPU, else CPU), cpu, cuda or cuda:N.</summary>
    public static Device SelectDevice(string spec)
    {
        var s = spec.Trim().ToLowerInvariant();
        if (s == "auto") return cuda.is_available() ? CUDA : CPU;
        if (s == "cpu") return CPU;
        if (s == "cuda" || s.StartsWith("cuda:", StringComparison.Ordinal))
        {
            if (!cuda.is_available())
                throw new ArgumentException(
                    $"device '{spec}' was asked for but libtorch sees no CUDA device; this build uses the " +
                    "CPU libtorch unless built with -p:TorchBackend=cuda (see README, 'CPU and CUDA')");
            return new Device(s);
        }
        throw new ArgumentException($"unknown device '{spec}'; allowed: {string.Join(", ", DeviceChoices)}, cuda:N");
    }

    /// <summary>
    /// Sets libtorch's intra-op threads. On a busy 2-core machine two threads can be several times slower than one,
    /// so this is a setting, not a guess.
    /// </summary>
    public static void SetThreads(int threads)
    {
        if (threads < 1) throw new ArgumentException($"threads must be at least 1, got {threads}");
        set_num_threads(threads);
    }

    public static int Threads => get_num_threads();
}
