using System.Diagnostics;

namespace MetaMae.TestSupport;

/// <summary>The metamae program built beside the specs, run as `dotnet metamae.dll ARGS`.</summary>
public static class MetamaeCommand
{
    public static ProcessStartInfo StartInfo(params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "metamae.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return psi;
    }

    /// <summary>Runs it to its end (killed, and a <see cref="TimeoutException"/>, after <paramref name="timeout"/>).</summary>
    public static (int Code, string Out, string Err) Run(TimeSpan timeout, params string[] args)
    {
        using var p = Process.Start(StartInfo(args))!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"metamae {string.Join(' ', args)} did not finish in {timeout}");
        }
        return (p.ExitCode, output.Result, err.Result);
    }
}
