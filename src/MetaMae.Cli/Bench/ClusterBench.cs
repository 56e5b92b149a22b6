using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Akka.Actor;
using Akka.Streams;
using Akka.Streams.Dsl;
using MetaMae.Actors.Cluster;
using MetaMae.Actors.Runs;
using MetaMae.Protocol;

namespace MetaMae.Cli.Bench;

/// <summary>One row: a data kind fed to the learner by N data nodes (0: the learner's own node).</summary>
public sealed record ClusterBenchRow(string Kind, int DataNodes, string Batches, double SamplesPerSecond, double DataWaitPercent, int Steps);

/// <summary>
/// Moving batches between two nodes: the serializer alone (to and from bytes in memory), through an Akka.Streams
/// SourceRef over Akka.Remote, over the batch plane, and as the same bytes over a plain TCP socket.
/// </summary>
public sealed record TransferRow(string Kind, int BatchBytes, int Batches, double SerializerMBps, double StreamRefMBps, double PlaneMBps, double TcpMBps);

/// <summary>
/// The learner's rate and data-wait when its batches come from 0 (its own node), 1, 2 or 3 data nodes on loopback,
/// every node an ActorSystem of its own in this process (as `metamae node` wires them); and the transfer rate of batches
/// through a StreamRef next to a plain TCP copy of the same bytes, in the same run.
/// </summary>
public static class ClusterBench
{
    public static readonly string[] Kinds = ["image", "speech"];
    /// <summary>How batches reach a learner on another node: the data node's batch plane, or stream references over Akka.Remote.</summary>
    public static readonly string[] BatchPaths = ["plane", "streamref"];

    public static async Task<(List<ClusterBenchRow> Rows, List<TransferRow> Transfers)> Run(IEnumerable<string> kinds, IReadOnlyList<int> dataNodes,
        IReadOnlyList<string> paths, int steps, string preset, int records, Action<string> progress)
    {
        var root = Directory.CreateTempSubdirectory("metamae-clusterbench-").FullName;
        var rows = new List<ClusterBenchRow>();
        var transfers = new List<TransferRow>();
        try
        {
            foreach (var kind in kinds)
            {
                var (dataset, _, batch) = DataBench.Prepare(kind, root, records);
                var dataRoot = kind == "image" ? Path.Combine(root, "img") : root;
                foreach (var n in dataNodes)
                foreach (var path in n == 0 ? ["own node"] : paths)
                {
                    var row = await Measure(kind, dataset.Spec.Name, dataRoot, batch, n, path, steps, preset, Path.Combine(root, $"runs-{kind}-{n}-{path}"));
                    progress($"  {kind,-7} {n} data node(s), {path,-9}: learner {row.SamplesPerSecond,8:F1} samples/s, data wait {row.DataWaitPercent,5:F1}%");
                    rows.Add(row);
                }
                var sample = dataset.Read(0, new Data.DecodeContext(0, 0, 0, true));
                var values = Enumerable.Range(0, batch).SelectMany(_ => sample.Values!).ToArray();
                var b = new Batch(batch, dataset.Spec.Shape, values, null, new float[batch], 1, StreamPosition.Start, 0);
                var t = await Transfer(kind, b, kind == "image" ? 400 : 120);
                progress($"  {kind,-7} transfer of {t.BatchBytes / 1e6:F2} MB batches: serializer {t.SerializerMBps:F0} MB/s, StreamRef {t.StreamRefMBps:F0} MB/s, batch plane {t.PlaneMBps:F0} MB/s, TCP {t.TcpMBps:F0} MB/s");
                transfers.Add(t);
            }
            return (rows, transfers);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static async Task<ClusterBenchRow> Measure(string kind, string dataset, string dataRoot, int batch, int dataNodes, string path, int steps, string preset,
        string outDir)
    {
        var config = new RunSpec
        {
            Name = "bench", Dataset = new DatasetRef { Name = dataset, Root = dataRoot }, Preset = preset, Steps = steps, BatchSize = batch,
            CheckpointEvery = steps, Device = "cpu", Threads = 1, Out = outDir, Seed = 1,
        };
        config.Validate();
        await using var cluster = new InProcessCluster { ExtraHocon = path == "streamref" ? "metamae.data-plane.batches = off" : "" };
        if (dataNodes == 0)
        {
            await cluster.Add(Roles.All);
        }
        else
        {
            await cluster.Add(Roles.Coordinator, Roles.Learner);
            for (int i = 0; i < dataNodes; i++) await cluster.Add(Roles.Data);
        }
        var reports = new List<StepReport>();
        var collector = cluster.Seed.ActorOf(Props.Create(() => new Collector(reports)));
        var result = await cluster.Run(0, config, $"bench-{kind}-{dataNodes}", TimeSpan.FromMinutes(20), collector);
        if (result.Status != RunStatus.Completed) throw new InvalidOperationException($"bench run failed: {result.Error}");
        lock (reports)
        {
            var timed = reports.Where(r => r.Step > Math.Min(3, steps / 4)).ToList(); // after start-up
            double busy = timed.Sum(r => r.StepSeconds + r.WaitSeconds);
            return new ClusterBenchRow(kind, dataNodes, path, timed.Sum(r => r.BatchSize) / busy, 100 * timed.Sum(r => r.WaitSeconds) / busy, timed.Count);
        }
    }

    private sealed class Collector : ReceiveActor
    {
        public Collector(List<StepReport> reports)
        {
            Receive<StepReport>(r =>
            {
                lock (reports) reports.Add(r);
            });
            ReceiveAny(_ => { });
        }
    }

    /// <summary>
    /// Batches from node B to node A through a SourceRef (serialized as a FeedOffered would be), then over B's batch
    /// plane, then the same bytes over TCP; and the serializer alone, to tell its share of the StreamRef's cost. Each
    /// way moves a tenth of the batches untimed first (JIT, connections, the heap's growth), then all of them timed.
    /// </summary>
    private static async Task<TransferRow> Transfer(string kind, Batch batch, int count)
    {
        await using var cluster = new InProcessCluster();
        await cluster.Add(Roles.Data); // members (a node without a role is a client, which does not join as one); their hosts stay idle
        await cluster.Add(Roles.Data);
        var producer = (ExtendedActorSystem)cluster.System(1);
        var consumer = (ExtendedActorSystem)cluster.System(0);
        int warmUp = Math.Max(4, count / 10);
        var sum = Sink.Aggregate<Batch, long>(0, (n, b) => n + b.PayloadBytes);

        async Task<double> StreamRef(int n)
        {
            var sourceRef = await Source.Repeat(batch).Take(n).RunWith(StreamRefs.SourceRef<Batch>(), producer.Materializer());
            // Through the wire format, so the consumer's reference is a remote one.
            var offer = new FeedOffered("bench", 0, 0, 1, sourceRef);
            var produced = producer.Serialization.FindSerializerFor(offer);
            var wire = Akka.Serialization.Serialization.WithTransport(producer, () => produced.ToBinary(offer)); // paths carry the producer's address
            var remote = (FeedOffered)consumer.Serialization.Deserialize(wire, produced.Identifier, Akka.Serialization.Serialization.ManifestFor(produced, offer));
            var clock = Stopwatch.StartNew();
            long received = await remote.Source!.Source.RunWith(sum, consumer.Materializer());
            return received / 1e6 / clock.Elapsed.TotalSeconds;
        }

        using var plane = new Actors.Feeds.BatchPlaneServer("127.0.0.1", "127.0.0.1", 0, 1, TimeSpan.FromSeconds(60), producer.Log);
        async Task<double> Plane(int n)
        {
            var (kill, queue) = Source.Repeat(batch).Take(n).ViaMaterialized(KillSwitches.Single<Batch>(), Keep.Right)
                .ToMaterialized(Actors.Feeds.BatchPlaneServer.Sink(), Keep.Both).Run(producer.Materializer());
            var channel = plane.Offer(queue, kill, "bench feed");
            var clock = Stopwatch.StartNew();
            long received = await PlaneFeed(channel).RunWith(sum, consumer.Materializer());
            return received / 1e6 / clock.Elapsed.TotalSeconds;
        }

        var serializer = producer.Serialization.FindSerializerFor(batch);
        var manifest = Akka.Serialization.Serialization.ManifestFor(serializer, batch);
        double Serializer(int n)
        {
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < n; i++) consumer.Serialization.Deserialize(serializer.ToBinary(batch), serializer.Identifier, manifest);
            return (double)batch.PayloadBytes * n / 1e6 / clock.Elapsed.TotalSeconds;
        }

        var bytesOfBatch = serializer.ToBinary(batch);
        await StreamRef(warmUp);
        double streamRef = await StreamRef(count);
        await Plane(warmUp);
        double batchPlane = await Plane(count);
        Serializer(warmUp);
        double serialized = Serializer(count);
        await Loopback.TcpCopy(bytesOfBatch, warmUp);
        double tcp = await Loopback.TcpCopy(bytesOfBatch, count);
        return new TransferRow(kind, bytesOfBatch.Length, count, serialized, streamRef, batchPlane, tcp);
    }

    /// <summary>The learner's end of a batch-plane feed, as a learner pulls it.</summary>
    private static Source<Batch, Akka.NotUsed> PlaneFeed(BatchChannel channel) => Actors.Feeds.BatchPlaneSource.Of(channel, CancellationToken.None);
}
