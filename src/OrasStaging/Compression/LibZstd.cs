using System.Runtime.InteropServices;

namespace OrasStaging.Compression;

/// <summary>
/// The system's libzstd, loaded at run time, through its stable streaming API (zstd.h: ZSTD_createDStream,
/// ZSTD_decompressStream, ZSTD_isError, ZSTD_getErrorName, ZSTD_freeDStream), whose ABI has held since 1.0.
/// </summary>
internal sealed class LibZstd
{
    [StructLayout(LayoutKind.Sequential)]
    public struct Buffer
    {
        public IntPtr Data;
        public nuint Size;
        public nuint Pos;
    }

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate IntPtr CreateFn();

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate nuint FreeFn(IntPtr stream);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate nuint InitFn(IntPtr stream);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate nuint DecompressFn(IntPtr stream, ref Buffer output, ref Buffer input);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate uint IsErrorFn(nuint code);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate IntPtr ErrorNameFn(nuint code);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate uint VersionFn();

    private static readonly string[] Candidates = { "libzstd.so.1", "libzstd.so", "libzstd.1.dylib", "libzstd.dylib", "libzstd.dll", "zstd.dll" };

    private LibZstd(string library) => Library = library;

    public string Library { get; }

    public string Version { get; private set; } = "";

    public CreateFn Create { get; private set; } = null!;

    public FreeFn Free { get; private set; } = null!;

    public DecompressFn Decompress { get; private set; } = null!;

    /// <summary>ZSTD_initDStream: a context back to the start of a frame; null where the library lacks it (the streams do not need it).</summary>
    public InitFn? Init { get; private set; }

    public IsErrorFn IsError { get; private set; } = null!;

    public ErrorNameFn ErrorName { get; private set; } = null!;

    public string Describe(nuint code) => Marshal.PtrToStringAnsi(ErrorName(code)) ?? $"error {code}";

    public static LibZstd? TryLoad(out string failure)
    {
        if (!NativeDecoderStream.TryLoadFirst(Candidates, out IntPtr handle, out string name))
        {
            failure = "libzstd is not installed";
            return null;
        }

        T? Export<T>(string symbol) where T : Delegate =>
            NativeLibrary.TryGetExport(handle, symbol, out IntPtr p) ? Marshal.GetDelegateForFunctionPointer<T>(p) : null;

        var create = Export<CreateFn>("ZSTD_createDStream");
        var free = Export<FreeFn>("ZSTD_freeDStream");
        var decompress = Export<DecompressFn>("ZSTD_decompressStream");
        var isError = Export<IsErrorFn>("ZSTD_isError");
        var errorName = Export<ErrorNameFn>("ZSTD_getErrorName");
        var version = Export<VersionFn>("ZSTD_versionNumber");
        if (create is null || free is null || decompress is null || isError is null || errorName is null || version is null)
        {
            failure = $"{name} lacks the ZSTD streaming API";
            return null;
        }

        uint v = version();
        if (v < 10300)
        {
            // 1.3 is the oldest release whose decoder we rely on for skippable frames and end-of-frame returns.
            failure = $"{name} is zstd {v / 10000}.{v / 100 % 100}.{v % 100}, older than 1.3";
            return null;
        }

        failure = "";
        return new LibZstd(name)
        {
            Version = $"{v / 10000}.{v / 100 % 100}.{v % 100}",
            Create = create,
            Free = free,
            Decompress = decompress,
            Init = Export<InitFn>("ZSTD_initDStream"),
            IsError = isError,
            ErrorName = errorName,
        };
    }
}
