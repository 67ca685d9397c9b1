import type { Metadata } from "next";
import type { ReactNode } from "react";

import "./globals.css";

export const metadata: Metadata = {
  title: "Tasks",
  description: "The tasks service's reference Next.js app: Better Auth sign-in, tasks through the /api/tasks proxy",
};

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body>
        <header>
          <a href="/">Tasks</a>
        </header>
        <main>{children}</main>
      </body>
    </html>
  );
}
