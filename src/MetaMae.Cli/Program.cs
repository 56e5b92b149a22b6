using System.CommandLine;
using MetaMae.Cli.Commands;

namespace MetaMae.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("metamae: modality-agnostic self-supervised pretraining (MetaMAE) on an Akka.NET pipeline.")
        {
            BenchCommand.Create(),
        };
        try
        {
            return root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }
}
