using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Akka.Actor;
using Akka.Configuration;
using MetaMae.Actors;
using MetaMae.Actors.Cluster;
using MetaMae.Model;
using MetaMae.Model.Distributed;
using MetaMae.Protocol;

namespace MetaMae.Cli.Bench;

/// <summary>One row: the ring all-reduce of <see cref="Floats"/> gradients across <see cref="Replicas"/> processes.</summary>
public sealed record AllReduceRow(int Replicas, string Precision, int Floats, double MedianMs, double MinMs, double MaxMs, double LinkMBps, double TcpMBps,
    string Transport = "akka");

/// <summary>
/// Time per gradient all-reduce between learner processes on loopback, through the paths a learner group uses
/// (<see cref="RingCollective"/> over the TCP data plane, <see cref="TcpRingTransport"/>, or over replica endpoint actors
/// on Akka.Remote with the binary chunk format), in fp32 and bf16, next to a raw TCP stream of the same bytes measured in
/// the same run. The link rate is the bus bandwidth: what each process sends per all-reduce (2(N-1)/N of the buffer, in
/// its wire precision) over the time taken, comparable with the TCP figure.
/// </summary>
public static class AllReduceBench
{
    public const string SystemName = "allreduce";

    /// <summary>The gradient count of the dabs preset's MetaMAE on images (what the issue calls about 7.3 M floats).</summary>
    public static int DabsGradients()
    {
        var shape = ModelBench.Shape("image");
        using var model = new MaskedAutoencoder(new ModelConfig(shape.Input, Presets.Get("dabs"), new ObjectiveOptions { Objective = Objective.MetaMae }));
        return (int)model.parameters().Sum(p => p.numel());
    }

    public static readonly string[] Transports = ["tcp", "akka"];

    /// <summary>Each transport's chunk, as a learner group uses it.</summary>
    public static int ChunkOf(string transport) => transport == "tcp" ? TcpRingTransport.ChunkFloats : RingCollective.DefaultChunkFloats;

    public static List<AllReduceRow> Run(IReadOnlyList<int> replicas, IReadOnlyList<string> transports, int floats, int iterations, int? chunkFloats,
        Action<string> progress)
    {
        var rows = new List<AllReduceRow>();
        double tcp = Loopback.TcpCopy(new byte[floats * 4], 8).GetAwaiter().GetResult();
        progress($"  raw TCP loopback stream of {floats * 4 / 1e6:F1} MB copies: {tcp:F0} MB/s");
        foreach (var n in replicas)
        foreach (var transport in transports)
        {
            var ports = Enumerable.Range(0, n).Select(_ => Loopback.FreePort()).ToList();
            var workers = Enumerable.Range(0, n).Select(r => SelfProcess.Start("bench", "allreduce-worker", "--rank", r.ToString(),
                "--ports", string.Join(",", ports), "--floats", floats.ToString(), "--iterations", iterations.ToString(),
                "--chunk-floats", (chunkFloats ?? ChunkOf(transport)).ToString(), "--transport", transport)).ToList();
            try
            {
                var outputs = workers.Select(w => w.StandardOutput.ReadToEndAsync()).ToList();
                var errors = workers.Select(w => w.StandardError.ReadToEndAsync()).ToList();
                foreach (var w in workers)
                    if (!w.WaitForExit(TimeSpan.FromMinutes(10))) throw new TimeoutException($"an all-reduce worker of {n} did not finish in 10 minutes");
                if (workers.FirstOrDefault(w => w.ExitCode != 0) is { } failed)
                    throw new InvalidOperationException($"all-reduce worker exited {failed.ExitCode}: {errors[workers.IndexOf(failed)].Result}");
                foreach (var line in outputs[0].Result.Split('\n').Where(l => l.StartsWith('{')))
                {
                    var result = JsonSerializer.Deserialize<WorkerResult>(line)!;
                    var ms = result.Milliseconds.Order().ToList();
                    double median = ms[ms.Count / 2];
                    double wireBytes = floats * (result.Precision == "bf16" ? 2.0 : 4.0) * 2 * (n - 1) / n;
                    var row = new AllReduceRow(n, result.Precision, floats, median, ms[0], ms[^1], wireBytes / 1e6 / (median / 1e3), tcp, transport);
                    progress($"  {n} processes, {transport}, {row.Precision}: {row.MedianMs:F1} ms per all-reduce (min {row.MinMs:F1}, max {row.MaxMs:F1}), " +
                             $"bus {row.LinkMBps:F0} MB/s ({row.LinkMBps / tcp:F2} of raw TCP)");
                    rows.Add(row);
                }
            }
            finally
            {
                foreach (var w in workers)
                {
                    if (!w.HasExited) w.Kill(entireProcessTree: true);
                    w.Dispose();
                }
            }
        }
        return rows;
    }

    private sealed record WorkerResult(string Precision, List<double> Milliseconds);

    /// <summary>
    /// One replica of the bench, wired as a learner group wires it: over the TCP data plane (a listener on its port, the
    /// ring connected to its neighbours') or over Akka.Remote (an ActorSystem on its port with a replica endpoint, peers
    /// resolved by address); then timed all-reduces (a check of the sum first). Rank 0 prints one JSON line per precision.
    /// </summary>
    public static int Worker(int rank, IReadOnlyList<int> ports, int floats, int iterations, int chunkFloats, string transport = "akka")
    {
        int n = ports.Count;
        ActorSystem? system = null;
        IDisposable? wire = null;
        var inbox = new ChunkInbox(TimeSpan.FromMinutes(2));
        RingCollective ring;
        if (transport == "tcp")
        {
            var listener = new RingListener("127.0.0.1", "127.0.0.1", ports[rank]);
            var link = TcpRingTransport.Connect(listener, 0, rank, ports.Select(p => $"127.0.0.1:{p}").ToList(), inbox.Timeout, inbox.Dissolved, () => inbox.Reason);
            wire = new Wire(link, listener);
            ring = new RingCollective(0, rank, n, link, chunkFloats);
        }
        else
        {
            var config = ConfigurationFactory.ParseString($$"""
                akka.loglevel = WARNING
                akka.actor.provider = remote
                akka.remote.dot-netty.tcp { hostname = 127.0.0.1, port = {{ports[rank]}} }
                """).WithFallback(ConfigurationFactory.ParseString(NodeHosting.Hocon)) // the nodes' frame size
                .WithFallback(ConfigurationFactory.ParseString(MetaMaeSerializer.Hocon));
            system = ActorSystem.Create(SystemName, config);
            system.ActorOf(ReplicaEndpointActor.Props(0, inbox), ReplicaEndpointActor.Name);
            var endpoints = ports.Select(p => Resolve(system, $"akka.tcp://{SystemName}@127.0.0.1:{p}/user/{ReplicaEndpointActor.Name}")).ToList();
            ring = new RingCollective(0, rank, n, ReplicaEndpointActor.SendTo(endpoints), inbox, chunkFloats);
        }

        var random = new Random(rank);
        var data = new float[floats];
        // A check first: replica r contributes r + 1 everywhere, so every element must sum to n(n+1)/2.
        Array.Fill(data, rank + 1f);
        ring.AllReduceSum(data, floats);
        if (data.Any(v => v != n * (n + 1) / 2f)) throw new InvalidOperationException("the all-reduce summed wrong");
        foreach (var precision in new[] { WirePrecision.Float32, WirePrecision.BFloat16 })
        {
            var times = new List<double>();
            for (int i = -2; i < iterations; i++) // two warm-up rounds
            {
                for (int k = 0; k < floats; k++) data[k] = (float)random.NextDouble();
                var clock = Stopwatch.StartNew();
                ring.AllReduceSum(data, floats, precision);
                if (i >= 0) times.Add(clock.Elapsed.TotalMilliseconds);
            }
            if (rank == 0)
                Console.WriteLine(JsonSerializer.Serialize(new WorkerResult(precision == WirePrecision.BFloat16 ? "bf16" : "fp32", times)));
        }
        // Everyone done before anyone leaves (a late peer still needs our last chunks).
        ring.AllReduceSum(new float[1], 1);
        Thread.Sleep(500);
        wire?.Dispose();
        system?.Terminate().Wait(TimeSpan.FromSeconds(10));
        return 0;
    }

    private sealed class Wire(TcpRingTransport link, RingListener listener) : IDisposable
    {
        public void Dispose()
        {
            link.Dispose();
            listener.Dispose();
        }
    }

    private static IActorRef Resolve(ActorSystem system, string path)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return system.ActorSelection(path).ResolveOne(TimeSpan.FromSeconds(2)).GetAwaiter().GetResult();
            }
            catch (Exception) when (clock.Elapsed < TimeSpan.FromSeconds(60))
            {
                Thread.Sleep(200);
            }
        }
    }
}

/// <summary>This program again, as a child process (`dotnet metamae.dll ...` or the published binary), output captured.</summary>
public static class SelfProcess
{
    public static ProcessStartInfo Info(params string[] args)
    {
        var host = Environment.ProcessPath!;
        var psi = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(host) == "dotnet") psi.ArgumentList.Add(typeof(SelfProcess).Assembly.Location);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return psi;
    }

    public static Process Start(params string[] args) => Process.Start(Info(args))!;
}
