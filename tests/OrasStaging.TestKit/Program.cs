using System.Runtime.InteropServices;
using System.Text.Json;

namespace OrasStaging.TestKit;

public static class Program
{
    private const string Usage = """
        usage: dotnet OrasStaging.TestKit.dll <command> [options]
          generate-image --out PATH --size BYTES [--seed N] [--shape realistic|zeros|random] [--data-fraction F]
          serve [--auth anonymous|basic|token] [--tls] [--token-expires-in SECONDS] [--strict-token-expiry] [--advertised-token-expires-in SECONDS] [--username U] [--password P]
                [--private-repository NAME] [--proxy-remote-url URL] [--no-stdin]
              prints one JSON line with every endpoint, then runs until stdin closes (unless --no-stdin)
              or SIGTERM/SIGINT/SIGHUP; then stops everything and removes its temporary directory.
          push --registry HOST:PORT --repository NAME [--tag latest] (--image RAW | --helm) [--compression gzip|zstd|xz|bzip2|none]
               [--title NAME] [--index] [--no-size-annotation] [--declared-size BYTES] [--username U --password P] [--tls [--ca PATH]]
              prints one JSON line describing what was pushed.
          push-layout --registry HOST:PORT --repository NAME [--tag latest] --spec FILE.json [--username U --password P] [--tls [--ca PATH]]
              pushes the manifests (and index) a JSON spec describes (see ArtifactPusher.Layout.cs); prints the digests.
        """;

    public static int Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.Error.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        try
        {
            return args[0] switch
            {
                "generate-image" => GenerateImage(new Cli(args.Skip(1))),
                "serve" => Serve(new Cli(args.Skip(1), "tls", "no-stdin", "strict-token-expiry")),
                "push" => Push(new Cli(args.Skip(1), "tls", "index", "helm", "no-size-annotation")),
                "push-layout" => PushLayout(new Cli(args.Skip(1), "tls")),
                _ => throw new ArgumentException($"unknown command '{args[0]}'"),
            };
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine($"error: {ex.Message}");
            Console.Error.WriteLine(Usage);
            return 2;
        }
        catch (Exception ex)
        {
            Console.Error.WriteLine($"error: {ex}");
            return 1;
        }
    }

    internal static ImageShape ParseShape(string? text) => text?.ToLowerInvariant() switch
    {
        null or "realistic" => ImageShape.Realistic,
        "zeros" or "zero" or "allzero" => ImageShape.AllZero,
        "random" => ImageShape.Random,
        _ => throw new ArgumentException($"unknown shape '{text}' (realistic|zeros|random)"),
    };

    private static int PushLayout(Cli cli)
    {
        var options = new PushOptions
        {
            Registry = cli.Require("registry"),
            Repository = cli.Require("repository"),
            Tag = cli.Get("tag") ?? "latest",
            Username = cli.Get("username"),
            Password = cli.Get("password"),
            Tls = cli.Flag("tls"),
            CaCertPath = cli.Get("ca"),
        };
        string spec = cli.Require("spec");
        cli.RejectUnknown();
        var result = ArtifactPusher.PushLayoutAsync(options, spec).GetAwaiter().GetResult();
        Console.WriteLine(result.ToJsonString());
        return 0;
    }

    private static int GenerateImage(Cli cli)
    {
        var path = Path.GetFullPath(cli.Require("out"));
        var size = cli.GetLong("size", -1);
        if (size < 0) throw new ArgumentException("--size BYTES is required");
        var seed = (int)cli.GetLong("seed", 1);
        var shape = ParseShape(cli.Get("shape"));
        var fraction = cli.GetDouble("data-fraction", 0.33);
        cli.RejectUnknown();
        DiskImageGenerator.WriteFile(path, size, seed, shape, fraction);
        Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["path"] = path,
            ["size"] = size,
            ["seed"] = seed,
            ["shape"] = shape.ToString(),
            ["dataFraction"] = fraction,
        }));
        return 0;
    }

    private static int Serve(Cli cli)
    {
        var options = new TestRegistryOptions
        {
            Auth = cli.Get("auth")?.ToLowerInvariant() switch
            {
                null or "anonymous" or "none" => RegistryAuth.Anonymous,
                "basic" or "htpasswd" => RegistryAuth.Basic,
                "token" or "bearer" => RegistryAuth.Token,
                var a => throw new ArgumentException($"unknown auth '{a}' (anonymous|basic|token)"),
            },
            Tls = cli.Flag("tls"),
            TokenExpiresIn = (int)cli.GetLong("token-expires-in", 300),
            StrictTokenExpiry = cli.Flag("strict-token-expiry"),
            AdvertisedTokenExpiresIn = cli.Get("advertised-token-expires-in") is null ? null : (int)cli.GetLong("advertised-token-expires-in", 0),
        };
        if (cli.Get("username") is { } user) options.Username = user;
        if (cli.Get("password") is { } password) options.Password = password;
        if (cli.Get("private-repository") is { } priv) options.PrivateRepository = priv;
        if (cli.Get("proxy-remote-url") is { } remote) options.ProxyRemoteUrl = remote;
        bool watchStdin = !cli.Flag("no-stdin");
        cli.RejectUnknown();

        using var stop = new CancellationTokenSource();
        var registry = TestRegistry.StartAsync(options).GetAwaiter().GetResult();
        var disposeOnce = new Lazy<bool>(() =>
        {
            registry.Dispose();
            return true;
        }, LazyThreadSafetyMode.ExecutionAndPublication);
        // Last resort when the host is torn down some other way (the watchdog covers SIGKILL).
        AppDomain.CurrentDomain.ProcessExit += (_, _) => _ = disposeOnce.Value;

        void OnSignal(PosixSignalContext context)
        {
            context.Cancel = true;
            stop.Cancel();
        }
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var hangup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnSignal);

        Console.Out.WriteLine(JsonSerializer.Serialize(registry.Info, new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
        Console.Out.Flush();

        if (watchStdin)
        {
            var reader = new Thread(() =>
            {
                try
                {
                    using var stdin = Console.OpenStandardInput();
                    var buffer = new byte[256];
                    while (stdin.Read(buffer, 0, buffer.Length) > 0)
                    {
                    }
                }
                catch (IOException)
                {
                }
                stop.Cancel();
            })
            { IsBackground = true, Name = "stdin watcher" };
            reader.Start();
        }

        stop.Token.WaitHandle.WaitOne();
        _ = disposeOnce.Value;
        return 0;
    }

    private static int Push(Cli cli)
    {
        var options = new PushOptions
        {
            Registry = cli.Require("registry"),
            Repository = cli.Require("repository"),
            Tag = cli.Get("tag") ?? "latest",
            ImagePath = cli.Get("image"),
            Compression = cli.Get("compression") ?? "gzip",
            Title = cli.Get("title"),
            Index = cli.Flag("index"),
            Helm = cli.Flag("helm"),
            SizeAnnotation = !cli.Flag("no-size-annotation"),
            DeclaredSize = cli.Get("declared-size") is { } declared ? long.Parse(declared, System.Globalization.CultureInfo.InvariantCulture) : null,
            Username = cli.Get("username"),
            Password = cli.Get("password"),
            Tls = cli.Flag("tls"),
            CaCertPath = cli.Get("ca"),
        };
        cli.RejectUnknown();
        if (!options.Helm && options.ImagePath is null) throw new ArgumentException("--image RAW is required (or --helm)");
        var result = ArtifactPusher.PushAsync(options).GetAwaiter().GetResult();
        Console.Out.WriteLine(JsonSerializer.Serialize(result, new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping, DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull }));
        return 0;
    }
}
