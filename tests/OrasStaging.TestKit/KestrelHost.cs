using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace OrasStaging.TestKit;

/// <summary>A Kestrel listener on 127.0.0.1 with a port chosen by the OS (port 0, so no race with other runs).</summary>
internal static class KestrelHost
{
    public static async Task<(WebApplication App, int Port)> StartAsync(X509Certificate2? certificate, Action<WebApplication> configure, CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        // stdout carries the one JSON line the caller parses; nothing else may write there.
        builder.Logging.ClearProviders();
        // The serve command owns SIGTERM/stdin handling; a console lifetime per listener would fight over it.
        builder.Services.AddSingleton<IHostLifetime, PassiveLifetime>();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = null; // pushes of multi-GB layers go through the proxy
            k.Listen(IPAddress.Loopback, 0, listen =>
            {
                if (certificate is not null) listen.UseHttps(certificate);
            });
        });
        var app = builder.Build();
        configure(app);
        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return (app, new Uri(address).Port);
    }

    private sealed class PassiveLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
