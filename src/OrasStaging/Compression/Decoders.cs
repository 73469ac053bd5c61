using SharpCompress.Compressors.BZip2;
using SharpCompress.Compressors.Xz;
using ZstdSharp;

namespace OrasStaging.Compression;

/// <summary>Which implementation decodes: the machine's native library when it has one, or the managed one.</summary>
internal enum DecoderChoice
{
    /// <summary>The faster of the two where the native one loads (ORASSTAGING_DECODER may force either), else managed.</summary>
    Default,
    Managed,
    /// <summary>The native decoder or an exception; for tests that must cover it.</summary>
    Native,
}

/// <summary>
/// Opens the decoder for a detected <see cref="CompressionKind"/>. zstd: the system's libzstd, else ZstdSharp.Port.
/// gzip: the faster of ISA-L's inflate (libisal) and the runtime's GZipStream, as measured: on .NET 9+ GZipStream is
/// zlib-ng, which decoded the 2 GiB bench image with 0.75x ISA-L's CPU time and system files with about the same, so
/// it is the default there; on .NET 8 it is the system zlib, about twice as slow, so ISA-L is preferred.
/// xz and bzip2: SharpCompress (checked to the byte against the xz and bzip2 CLIs). In-process libraries rather than an
/// igzip pipe stage: no process to start, no pipe copy, and errors arrive as codes, not as an exit status.
/// Every path checks CRC and length, walks concatenated members or frames, reports truncation, and gives the same
/// bytes. A native library that does not load is tried once per process; a decoder that finds corrupt data throws,
/// and never falls back.
/// </summary>
internal static class Decoders
{
    /// <summary>"managed" forces the managed decoders, "native" the native ones where they load.</summary>
    public const string Switch = "ORASSTAGING_DECODER";

    /// <summary>GZipStream is backed by zlib-ng from .NET 9 on; before, by the system's slower zlib.</summary>
    private static readonly bool RuntimeGzipIsFast = Environment.Version.Major >= 9;

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
        string setting = Environment.GetEnvironmentVariable(Switch) is { Length: > 0 } value ? $"{Switch}={value}" : "";
        string gzipWhy = Forced("managed") ? setting
            : !HasNative(CompressionKind.Gzip) ? $"ISA-L unavailable: {Isal.Value.Failure}"
            : $"zlib-ng in .NET {Environment.Version.Major} is as fast as ISA-L; {Switch}=native selects ISA-L";
        return kind switch
        {
            CompressionKind.None => "none (not compressed)",
            CompressionKind.Gzip when native => $"gzip: ISA-L inflate ({Isal.Value.Api!.Library})",
            CompressionKind.Gzip => $"gzip: the runtime's GZipStream ({gzipWhy})",
            CompressionKind.Zstd when native => $"zstd: libzstd {Zstd.Value.Api!.Version} ({Zstd.Value.Api!.Library})",
            CompressionKind.Zstd => $"zstd: ZstdSharp ({(Forced("managed") ? setting : $"libzstd unavailable: {Zstd.Value.Failure}")})",
            CompressionKind.Xz => "xz: SharpCompress",
            CompressionKind.Bzip2 => "bzip2: SharpCompress",
            _ => kind.ToString(),
        };
    }

    /// <summary>
    /// ISA-L's inflate for the raw-deflate clusters of a qcow2, or null for the runtime's DeflateStream. Unlike a gzip
    /// stream, a cluster is small: what counts is the per-call set-up, which a reused ISA-L state does not pay and a
    /// DeflateStream per cluster does, so the native one is the default wherever it loads. Same switch as streams.
    /// </summary>
    public static IsalInflate? ClusterInflater(DecoderChoice choice) =>
        UseNative(CompressionKind.Gzip, choice, clusters: true) ? Isal.Value.Api : null;

    /// <summary>libzstd for the zstd clusters of a qcow2, or null for ZstdSharp; the rule of <see cref="ClusterInflater"/>.</summary>
    public static LibZstd? ClusterZstd(DecoderChoice choice) =>
        UseNative(CompressionKind.Zstd, choice, clusters: true) ? Zstd.Value.Api : null;

    private static bool Forced(string value) =>
        string.Equals(Environment.GetEnvironmentVariable(Switch), value, StringComparison.OrdinalIgnoreCase);

    /// <param name="clusters">For qcow2 clusters, where ISA-L is preferred over zlib-ng too (see <see cref="ClusterInflater"/>).</param>
    private static bool UseNative(CompressionKind kind, DecoderChoice choice, bool clusters = false)
    {
        if (kind is not (CompressionKind.Gzip or CompressionKind.Zstd) || choice == DecoderChoice.Managed)
        {
            return false;
        }

        if (choice == DecoderChoice.Native)
        {
            return HasNative(kind) ? true : throw new InvalidOperationException($"No native {kind} decoder: {Describe(kind)}");
        }

        if (Forced("managed"))
        {
            return false;
        }

        return HasNative(kind) && (clusters || kind == CompressionKind.Zstd || !RuntimeGzipIsFast || Forced("native"));
    }
}
