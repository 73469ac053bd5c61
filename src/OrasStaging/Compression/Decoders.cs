using SharpCompress.Compressors.BZip2;
using SharpCompress.Compressors.Xz;
using ZstdSharp;

namespace OrasStaging.Compression;

/// <summary>Which implementation decodes: the machine's native library when it has one, or the managed one.</summary>
internal enum DecoderChoice
{
    /// <summary>Native when it loads (and ORASSTAGING_DECODER is not "managed"), else managed.</summary>
    Default,
    Managed,
    /// <summary>The native decoder or an exception; for tests that must cover it.</summary>
    Native,
}

/// <summary>
/// Opens the decoder for a detected <see cref="CompressionKind"/>. gzip: ISA-L's inflate (libisal) when the machine
/// has it, else the runtime's GZipStream; zstd: the system's libzstd, else ZstdSharp.Port; xz and bzip2: SharpCompress
/// (checked to the byte against the xz and bzip2 CLIs). In-process libraries rather than an igzip pipe stage: no
/// process to start, no pipe copy, and errors arrive as codes, not as an exit status. Every path checks CRC and
/// length, walks concatenated members or frames, and reports truncation; all decode the same bytes. A native library
/// that does not load is tried once per process; a native decoder that finds corrupt data throws, never falls back.
/// </summary>
internal static class Decoders
{
    /// <summary>Set to "managed" to force the managed decoders (tests use it to cover both paths).</summary>
    public const string Switch = "ORASSTAGING_DECODER";

    private static readonly Lazy<(IsalInflate? Api, string Failure)> Isal =
        new(() => (IsalInflate.TryLoad(out string failure), failure));

    private static readonly Lazy<(LibZstd? Api, string Failure)> Zstd =
        new(() => (LibZstd.TryLoad(out string failure), failure));

    public static Stream Open(CompressionKind kind, Stream compressed) => Open(kind, compressed, DecoderChoice.Default);

    public static Stream Open(CompressionKind kind, Stream compressed, DecoderChoice choice)
    {
        bool native = UseNative(kind, choice);
        return kind switch
        {
            CompressionKind.None => compressed,
            CompressionKind.Gzip when native => new IsalGzipStream(compressed, Isal.Value.Api!),
            CompressionKind.Gzip => new ManagedGzipStream(compressed),
            CompressionKind.Zstd when native => new LibZstdStream(compressed, Zstd.Value.Api!),
            CompressionKind.Zstd => new DecompressionStream(compressed, bufferSize: 1 << 20, checkEndOfStream: true, leaveOpen: true),
            CompressionKind.Xz => new XZStream(compressed),
            CompressionKind.Bzip2 => BZip2Stream.Create(compressed, SharpCompress.Compressors.CompressionMode.Decompress, decompressConcatenated: true, leaveOpen: true),
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
    }

    /// <summary>True when this machine has a working native decoder for the kind (regardless of the switch).</summary>
    public static bool HasNative(CompressionKind kind) => kind switch
    {
        CompressionKind.Gzip => Isal.Value.Api is not null,
        CompressionKind.Zstd => Zstd.Value.Api is not null,
        _ => false,
    };

    /// <summary>
    /// One line for Verbose naming the decoder <see cref="Open(CompressionKind, Stream)"/> uses for the kind, and why
    /// the managed one when a native one was wanted (forced by the switch, or the library did not load).
    /// </summary>
    public static string Describe(CompressionKind kind)
    {
        bool native = UseNative(kind, DecoderChoice.Default);
        string managedWhy = ForcedManaged ? $"{Switch}=managed" : "";
        return kind switch
        {
            CompressionKind.None => "none (not compressed)",
            CompressionKind.Gzip when native => $"gzip: ISA-L inflate ({Isal.Value.Api!.Library})",
            CompressionKind.Gzip => $"gzip: the runtime's GZipStream ({(ForcedManaged ? managedWhy : $"ISA-L unavailable: {Isal.Value.Failure}")})",
            CompressionKind.Zstd when native => $"zstd: libzstd {Zstd.Value.Api!.Version} ({Zstd.Value.Api!.Library})",
            CompressionKind.Zstd => $"zstd: ZstdSharp ({(ForcedManaged ? managedWhy : $"libzstd unavailable: {Zstd.Value.Failure}")})",
            CompressionKind.Xz => "xz: SharpCompress",
            CompressionKind.Bzip2 => "bzip2: SharpCompress",
            _ => kind.ToString(),
        };
    }

    private static bool ForcedManaged =>
        string.Equals(Environment.GetEnvironmentVariable(Switch), "managed", StringComparison.OrdinalIgnoreCase);

    private static bool UseNative(CompressionKind kind, DecoderChoice choice)
    {
        if (kind is not (CompressionKind.Gzip or CompressionKind.Zstd) || choice == DecoderChoice.Managed)
        {
            return false;
        }

        if (choice == DecoderChoice.Native)
        {
            return HasNative(kind) ? true : throw new InvalidOperationException($"No native {kind} decoder: {Describe(kind)}");
        }

        return !ForcedManaged && HasNative(kind);
    }
}
