using System.Diagnostics;

namespace MetaMae.Model.Training;

/// <summary>
/// Wall time of each pass of a training step, accumulated over steps (for the step benchmark): encoder, inner decode,
/// inner gradient, outer decode, projector (with NT-Xent), backward, optimizer (with the gradient norm). On CPU the
/// operations are synchronous, so a lap is the pass's own time; on CUDA a lap would only time the launches.
/// </summary>
public sealed class PassTimer
{
    public static readonly string[] Passes = ["encoder", "inner decode", "inner gradient", "outer decode", "projector", "backward", "optimizer"];

    private readonly Dictionary<string, double> seconds = [];
    private readonly Stopwatch clock = new();

    public int Steps { get; private set; }

    /// <summary>Starts a step's first lap.</summary>
    public void Start()
    {
        Steps++;
        clock.Restart();
    }

    /// <summary>Ends the current lap as <paramref name="pass"/> and starts the next.</summary>
    public void Lap(string pass)
    {
        seconds[pass] = seconds.GetValueOrDefault(pass) + clock.Elapsed.TotalSeconds;
        clock.Restart();
    }

    /// <summary>Mean milliseconds per step of each pass that ran.</summary>
    public IReadOnlyDictionary<string, double> MeanMs() =>
        Passes.Where(seconds.ContainsKey).ToDictionary(p => p, p => 1000 * seconds[p] / Math.Max(1, Steps));
}
